// Who used my data: each proof checked on chain from the browser, with the leaf recomputed here.

import { cohortLeaf, inCohort } from "../chain.js";
import { action, config, say } from "../config.js";

export function initDataUses() {
  for (const button of document.querySelectorAll("button.check-proof")) {
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
}
