// Who used my data: each proof checked on chain from the browser, with the leaf recomputed here. In a
// deployment that seals proofs, the page first finds my envelopes by tag (without the session cookie)
// and opens them with the key kept in this browser; the exchange never sees which ones are mine.

import { computeAddress, getAddress, hexlify } from "ethers";
import { savedSession } from "../api.js";
import { cohortLeaf, inCohort } from "../chain.js";
import { action, config, say } from "../config.js";
import { SealedError, fromBase64, openEnvelope, sealedTag } from "../sealed.js";
import { currentSigner } from "../wallet.js";

const KINDS = [["image", 1], ["ct-sinogram", 2], ["mr-kspace", 4], ["derived", 8]];
const MAX_TAGS = 256; // per lookup, as the API takes them

function wireCheck(button) {
  const result = button.parentElement.querySelector(".check-result");
  action(button, result, async () => {
    const { studyId, round, hospital, recordId, kind, leaf, proof } = button.dataset;
    say(result, "Asking the chain…");
    const mine = cohortLeaf(recordId, Number(kind), config().address);
    if (mine !== leaf.toLowerCase()) {
      throw new Error("Not verified: the leaf the exchange gave is not the one of your record and address");
    }
    const proofs = proof ? proof.split(",") : [];
    const answer = await inCohort(BigInt(studyId), Number(round), hospital, mine, proofs);
    if (!answer.included) throw new Error(`Not verified: at block ${answer.block} the chain says this record was not in the cohort`);
    say(result, `Verified on chain at block ${answer.block}: your record was in round ${round}'s cohort.`, "ok");
  });
}

// A JSON request without the session cookie: nothing in it tells the exchange who asks.
async function anonymous(method, path, body) {
  const response = await fetch(path, {
    method, credentials: "omit", headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.detail || `the exchange answered HTTP ${response.status}`);
  return answer;
}

// Every (study, hospital) with a round that held my records: the rounds with my records, checked against
// the round the envelope was found for, each leaf computed from my own address.
async function findMine(privateKey, address, status) {
  const listing = await anonymous("GET", "/v1/sealed-proofs/rounds");
  const tags = new Map();
  for (const round of listing.rounds) {
    if (computeAddress(round.hospital_public_key) !== getAddress(round.hospital)) {
      throw new Error(`the public key listed for hospital ${round.hospital} is not that hospital's`);
    }
    const tag = await sealedTag(privateKey, round.hospital_public_key, listing.chain_id, listing.study_registry,
      round.study_id, round.round);
    tags.set(hexlify(tag), { tag, round });
  }
  say(status, `Looking up your tags for ${tags.size} published rounds…`);
  const names = [...tags.keys()];
  const found = [];
  for (let start = 0; start < names.length; start += MAX_TAGS) {
    const answer = await anonymous("POST", "/v1/sealed-proofs/lookup", { tags: names.slice(start, start + MAX_TAGS) });
    found.push(...answer.found.filter((item) => tags.has(item.tag)));
  }
  const mine = new Map(); // "study hospital" -> Map(round -> records)
  for (const item of found) {
    const { tag, round } = tags.get(item.tag);
    const where = `round ${round.round} of study ${round.study_id} at hospital ${round.hospital}`;
    let content;
    try {
      content = await openEnvelope(privateKey, tag, fromBase64(item.ciphertext));
    } catch (error) {
      throw new Error(`your envelope for ${where} does not open: ${error instanceof SealedError ? error.message : error}`);
    }
    if (content.study_id !== round.study_id || content.round !== round.round
        || getAddress(content.hospital) !== getAddress(round.hospital) || content.cohort_root !== round.cohort_root) {
      throw new Error(`your envelope for ${where} is about another round`);
    }
    const records = content.records.map((r) => ({ ...r, leaf: cohortLeaf(r.record_id, r.kind, address) }));
    const key = `${round.study_id} ${round.hospital}`;
    if (!mine.has(key)) mine.set(key, new Map());
    mine.get(key).set(round.round, records);
  }
  return { listing, mine };
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function shortCode(address) {
  return el("code", { title: address }, `${address.slice(0, 6)}…${address.slice(-4)}`);
}

function kindWords(kind) {
  const names = KINDS.filter(([, flag]) => kind & flag).map(([name]) => name);
  return names.length ? names.join(", ") : `kind ${kind}`;
}

// The same table the server renders for plain proofs.
function render(listing, mine, container) {
  container.replaceChildren();
  for (const [key, rounds] of mine) {
    const [studyId, hospital] = key.split(" ");
    const listed = listing.rounds.filter((r) => `${r.study_id} ${r.hospital}` === key);
    const body = el("tbody");
    for (const r of listed) {
      const records = rounds.get(r.round) || [];
      const cohort = `${r.cohort_count} records, anchored in block ${r.block}`;
      for (const rec of records) {
        const button = el("button", { type: "button", class: "check-proof", dataset: {
          studyId: String(r.study_id), round: String(r.round), hospital: r.hospital, recordId: rec.record_id,
          kind: String(rec.kind), leaf: rec.leaf, proof: rec.proof.join(","),
        } }, "Check on chain");
        body.append(el("tr", { class: "included", dataset: { round: String(r.round) } }, el("td", {}, String(r.round)),
          el("td", {}, "used: record ", el("code", { title: rec.record_id }, `${rec.record_id.slice(0, 12)}…`),
            ` (${kindWords(rec.kind)} data)`),
          el("td", {}, cohort), el("td", {}, button, " ", el("span", { class: "check-result", role: "status" }))));
        wireCheck(button);
      }
      if (!records.length) {
        const words = r.complete ? "not used: none of your records was in this round" : "not yet published by the hospital";
        body.append(el("tr", { class: r.complete ? "excluded" : "unpublished", dataset: { round: String(r.round) } },
          el("td", {}, String(r.round)), el("td", {}, words), el("td", {}, cohort), el("td", {}, "—")));
      }
    }
    const first = listed[0];
    container.append(el("section", { class: "card use", dataset: { studyId, hospital } },
      el("h2", {}, `Study ${studyId} at hospital `, shortCode(hospital)),
      el("p", {}, `For ${first.purpose_words}; requested by researcher `, shortCode(first.researcher), "."),
      el("table", { class: "rounds" }, el("thead", {}, el("tr", {}, el("th", {}, "Round"), el("th", {}, "Your data"),
        el("th", {}, "Cohort"), el("th", {}, "Check"))), body)));
  }
}

function initSealed() {
  const button = document.getElementById("open-sealed");
  if (!button) return;
  const session = savedSession();
  if (session && session.wallet === "injected") {
    document.getElementById("sealed-wallet-note").hidden = false;
    button.disabled = true;
    return;
  }
  action(button, "sealed-status", async () => {
    const signer = await currentSigner();
    if (signer.kind !== "browser") throw new Error("a browser wallet cannot open sealed proofs; use a key kept in this browser");
    say("sealed-status", "Finding the rounds…");
    const { listing, mine } = await findMine(signer.wallet.privateKey, signer.address, "sealed-status");
    render(listing, mine, document.getElementById("sealed-uses"));
    const rounds = [...mine.values()].reduce((n, m) => n + m.size, 0);
    say("sealed-status", rounds
      ? `Opened your proofs for ${rounds} round${rounds === 1 ? "" : "s"} of ${listing.rounds.length} published.`
      : `None of the ${listing.rounds.length} rounds published so far holds your records.`, "ok");
  });
}

export function initDataUses() {
  for (const button of document.querySelectorAll("button.check-proof")) wireCheck(button);
  initSealed();
}
