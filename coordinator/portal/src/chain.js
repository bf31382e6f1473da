// The chain's JSON-RPC, called from the browser: what the page checks there it does not take from
// the coordinator's word.

import { AbiCoder, Interface, getAddress, keccak256 } from "ethers";
import { config } from "./config.js";

const STUDY_REGISTRY = new Interface([
  "function inCohort(uint256 studyId, uint16 round, address hospital, bytes32 leaf, bytes32[] proof) view returns (bool)",
]);
let nextId = 1;

export async function rpc(method, params) {
  const url = config().rpcUrl;
  if (!url) throw new Error("this page does not know the chain's JSON-RPC URL (METAI_COORDINATOR_PUBLIC_RPC_URL)");
  const response = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json" }, credentials: "omit",
    body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params }),
  });
  if (!response.ok) throw new Error(`the chain's JSON-RPC answered HTTP ${response.status}`);
  const body = await response.json();
  if (body.error) throw new Error(`the chain refused ${method}: ${body.error.message}`);
  return body.result;
}

// The leaf of a record in a round's cohort: keccak256(keccak256(abi.encode(bytes32 record, uint8 kind,
// address patient))), as contracts/leaves.py and OpenZeppelin's MerkleProof have it.
export function cohortLeaf(recordId, kind, patient) {
  const encoded = AbiCoder.defaultAbiCoder().encode(
    ["bytes32", "uint8", "address"], ["0x" + recordId.replace(/^0x/, ""), kind, getAddress(patient)]);
  return keccak256(keccak256(encoded));
}

// Ask StudyRegistry.inCohort at the latest block: {included, block}.
export async function inCohort(studyId, round, hospital, leaf, proof) {
  const block = await rpc("eth_blockNumber", []);
  const data = STUDY_REGISTRY.encodeFunctionData("inCohort", [studyId, round, hospital, leaf, proof]);
  const result = await rpc("eth_call", [{ to: config().studyRegistry, data }, block]);
  const [included] = STUDY_REGISTRY.decodeFunctionResult("inCohort", result);
  return { included, block: Number(BigInt(block)) };
}

// Wait until transaction `hash` is mined; its receipt.
export async function receiptOf(hash, timeoutMs = 120000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const receipt = await rpc("eth_getTransactionReceipt", [hash]);
    if (receipt) return receipt;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`transaction ${hash} was not mined within ${timeoutMs / 1000} s`);
}
