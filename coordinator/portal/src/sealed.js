// Sealed cohort proofs in the browser: the patient's tag for a round and the opening of an envelope, as
// docs/coordinator.md ("The sealed envelope") specifies and contracts/sealing.py writes them. ECDH with
// ethers' SigningKey; HKDF, HMAC and AES-GCM with WebCrypto. The private key never leaves this tab.

import { SigningKey, getBytes, hexlify } from "ethers";

const VERSION = 1;
const HEADER = 34; // version, compressed ephemeral public key
const NONCE = 12;
const GCM_TAG = 16;
const utf8 = new TextEncoder();
const TAG_INFO = utf8.encode("metai sealed-proof tag v1");
const KEY_INFO = utf8.encode("metai sealed-proof key v1");

export class SealedError extends Error {}

// The x coordinate of the ECDH point (computeSharedSecret gives 0x04 || x || y).
function sharedX(signingKey, publicKey) {
  return getBytes(signingKey.computeSharedSecret(publicKey)).slice(1, 33);
}

async function hkdf(ikm, salt, info) {
  const key = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  return new Uint8Array(await crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info }, key, 256));
}

// The 32-byte tag of my envelope of `round` of `studyId` at the hospital whose public key is given
// (0x + 128 hex digits, x || y).
export async function sealedTag(privateKey, hospitalPublicKey, chainId, studyRegistry, studyId, round) {
  const signingKey = new SigningKey(privateKey);
  const tagKey = await hkdf(sharedX(signingKey, hospitalPublicKey), new Uint8Array(0), TAG_INFO);
  const key = await crypto.subtle.importKey("raw", tagKey, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const context = utf8.encode(`${chainId}:${studyRegistry.toLowerCase()}:${studyId}:${round}`);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, context));
}

// The content of an envelope (bytes) sealed to my key under `tag` (bytes); SealedError if it does not open.
export async function openEnvelope(privateKey, tag, envelope) {
  if (envelope.length < HEADER + NONCE + GCM_TAG + 4) throw new SealedError(`an envelope of ${envelope.length} bytes is too short`);
  if (envelope[0] !== VERSION) throw new SealedError(`envelope version ${envelope[0]}; this page opens version ${VERSION}`);
  const header = envelope.slice(0, HEADER);
  let x;
  try {
    x = sharedX(new SigningKey(privateKey), hexlify(header.slice(1)));
  } catch {
    throw new SealedError("the envelope's ephemeral key is not a point of the curve");
  }
  const key = await crypto.subtle.importKey("raw", await hkdf(x, header, KEY_INFO), "AES-GCM", false, ["decrypt"]);
  let padded;
  try {
    padded = new Uint8Array(await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: envelope.slice(HEADER, HEADER + NONCE), additionalData: tag }, key,
      envelope.slice(HEADER + NONCE)));
  } catch {
    throw new SealedError("the envelope does not open with this key and tag (sealed to another key, or altered)");
  }
  const length = new DataView(padded.buffer).getUint32(0);
  if (length > padded.length - 4 || padded.slice(4 + length).some((b) => b !== 0)) {
    throw new SealedError("the envelope's padding is malformed");
  }
  const content = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(padded.slice(4, 4 + length)));
  if (content.format !== "metai-sealed-proof" || content.version !== VERSION) {
    throw new SealedError(`the envelope holds ${content.format} version ${content.version}`);
  }
  return content;
}

export function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}
