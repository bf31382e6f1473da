// My consents: grant and revoke (EIP-712, relayed by the exchange), cancel outstanding signatures.

import { api } from "../api.js";
import { action, say, sleep } from "../config.js";
import { currentSigner } from "../wallet.js";

const FLASH = "metai.flash";
const FINAL = new Set(["mined", "failed"]);

// Sign the grant or revocation `body` describes, hand it to the relay and wait for the chain.
async function signAndRelay(body, status) {
  const typed = await api("POST", "/v1/consents/typed-data", body);
  const signer = await currentSigner();
  say(status, `Sign: ${typed.summary}`);
  const signature = await signer.signTypedData(typed.typed_data);
  let item = await api("POST", "/v1/consents/signed", { typed_data: typed.typed_data, signature });
  const until = Date.now() + 120000;
  while (!FINAL.has(item.state)) {
    if (Date.now() > until) throw new Error(`still ${item.state} after two minutes; this page will show it later`);
    say(status, `Signed. The exchange is sending it to the chain (${item.state})…`);
    await sleep(500);
    item = await api("GET", `/v1/consents/relay/${item.id}`);
  }
  if (item.state === "failed") {
    throw new Error(`The chain refused it: ${item.error || "unknown error"}${item.error_detail ? ` (${item.error_detail})` : ""}`);
  }
  return item;
}

function reloadWith(message) {
  sessionStorage.setItem(FLASH, message);
  window.location.reload();
}

function grantBody(form) {
  const data = new FormData(form);
  const purpose = data.get("purpose");
  const scope = { purpose, study_id: Number(data.get("study_id") || 0) };
  const hospital = String(data.get("hospital") || "").trim();
  if (hospital) scope.hospital = hospital;
  if (purpose === "DS") scope.disease = Number(data.get("disease") || 0);
  const body = { action: "grant", scope, kinds: data.getAll("kinds") };
  if (body.kinds.length === 0) throw new Error("choose at least one kind of data");
  const expires = data.get("expires");
  if (expires) body.expires_at = Math.floor(new Date(`${expires}T23:59:59`).getTime() / 1000);
  return body;
}

export function initConsents() {
  const flash = sessionStorage.getItem(FLASH);
  if (flash) {
    sessionStorage.removeItem(FLASH);
    say("consents-status", flash, "ok");
  }

  const form = document.getElementById("grant-form");
  const disease = document.getElementById("grant-disease");
  form.addEventListener("change", () => {
    disease.disabled = new FormData(form).get("purpose") !== "DS";
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  action(document.getElementById("grant-submit"), "grant-status", async () => {
    if (!form.reportValidity()) return;
    const item = await signAndRelay(grantBody(form), "grant-status");
    reloadWith(`Your consent is on the chain (block ${item.block}).`);
  });

  for (const button of document.querySelectorAll("button.revoke")) {
    action(button, "consents-status", async () => {
      const { hospital, purpose, disease, studyId } = button.dataset;
      const scope = { purpose, disease: Number(disease), study_id: Number(studyId) };
      if (hospital) scope.hospital = hospital;
      const item = await signAndRelay({ action: "revoke", scope }, "consents-status");
      reloadWith(`Your consent is withdrawn on the chain (block ${item.block}); studies leave your data out from their next round.`);
    });
  }

  const cancel = document.getElementById("cancel-signatures");
  action(cancel, "cancel-status", async () => {
    const prepared = await api("POST", "/v1/consents/cancel");
    const signer = await currentSigner();
    const waiting = prepared.outstanding.length;
    say("cancel-status", `Sending the cancellation from your account (${waiting} signature${waiting === 1 ? "" : "s"} waiting)…`);
    const receipt = await signer.sendTransaction({ to: prepared.to, data: prepared.data });
    if (receipt.status !== "0x1") throw new Error(`the cancellation failed on the chain (transaction ${receipt.transactionHash})`);
    say("cancel-status", `Done in block ${Number(BigInt(receipt.blockNumber))}: every signature of yours numbered below `
      + `${prepared.up_to} is void.`, "ok");
  });
}
