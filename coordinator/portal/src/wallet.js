// Who signs: an injected EIP-1193 wallet (window.ethereum) when the person has one, else a key kept
// in this browser, encrypted with a passphrase (ethers' JSON keystore, scrypt) in localStorage and
// unlocked once per tab (sessionStorage) until sign-out or the tab closes.

import { Wallet, getAddress, hexlify, toUtf8Bytes } from "ethers";
import { savedSession } from "./api.js";
import { receiptOf, rpc } from "./chain.js";
import { config, say } from "./config.js";

const KEYS = "metai.keys"; // localStorage: {address: keystore JSON}
const UNLOCKED = "metai.unlocked"; // sessionStorage: {address, privateKey}
export const MIN_PASSPHRASE = 10;

export function injectedWallet() {
  const provider = window.ethereum;
  return provider && typeof provider.request === "function" ? provider : null;
}

class InjectedSigner {
  constructor(provider, address) {
    this.kind = "injected";
    this.provider = provider;
    this.address = getAddress(address);
  }

  signMessage(text) {
    return this.provider.request({ method: "personal_sign", params: [hexlify(toUtf8Bytes(text)), this.address] });
  }

  signTypedData(typed) {
    return this.provider.request({ method: "eth_signTypedData_v4", params: [this.address, JSON.stringify(typed)] });
  }

  async sendTransaction({ to, data }) {
    const hash = await this.provider.request({
      method: "eth_sendTransaction", params: [{ from: this.address, to, data }],
    });
    return receiptOf(hash);
  }
}

class BrowserKeySigner {
  constructor(wallet) {
    this.kind = "browser";
    this.wallet = wallet;
    this.address = wallet.address;
  }

  signMessage(text) {
    return this.wallet.signMessage(text);
  }

  // The typed data as the API gives it for eth_signTypedData_v4; ethers wants the types without
  // EIP712Domain (it derives the domain's type from the domain itself).
  signTypedData(typed) {
    const { EIP712Domain: _domain, ...types } = typed.types;
    return this.wallet.signTypedData(typed.domain, types, typed.message);
  }

  // Fill in the transaction from the chain (nonce, gas, fees), sign it here and send it raw: no
  // provider object polls the chain in the background.
  async sendTransaction({ to, data }) {
    const from = this.address;
    const [nonce, gas, block, tip] = await Promise.all([
      rpc("eth_getTransactionCount", [from, "pending"]),
      rpc("eth_estimateGas", [{ from, to, data }]),
      rpc("eth_getBlockByNumber", ["latest", false]),
      rpc("eth_maxPriorityFeePerGas", []),
    ]);
    const priority = BigInt(tip);
    const signed = await this.wallet.signTransaction({
      type: 2, chainId: config().chainId, to, data, nonce: Number(BigInt(nonce)),
      gasLimit: (BigInt(gas) * 12n) / 10n, // a margin over the estimate
      maxPriorityFeePerGas: priority, maxFeePerGas: BigInt(block.baseFeePerGas || 0) * 2n + priority,
    });
    return receiptOf(await rpc("eth_sendRawTransaction", [signed]));
  }
}

export async function injectedSigner() {
  const provider = injectedWallet();
  if (!provider) throw new Error("no browser wallet is installed");
  const [address] = await provider.request({ method: "eth_requestAccounts" });
  if (!address) throw new Error("the wallet gave no account");
  return new InjectedSigner(provider, address);
}

// ---------------------------------------------------------------- keys kept in this browser

export function storedKeys() {
  try {
    return JSON.parse(localStorage.getItem(KEYS) || "{}");
  } catch {
    return {};
  }
}

function checkPassphrase(passphrase) {
  if (passphrase.length < MIN_PASSPHRASE) {
    throw new Error(`the passphrase has ${passphrase.length} characters; choose at least ${MIN_PASSPHRASE}`);
  }
}

function remember(wallet) {
  sessionStorage.setItem(UNLOCKED, JSON.stringify({ address: wallet.address, privateKey: wallet.privateKey }));
  return new BrowserKeySigner(wallet);
}

async function store(wallet, passphrase) {
  const keystore = await wallet.encrypt(passphrase);
  const keys = storedKeys();
  keys[wallet.address] = keystore;
  localStorage.setItem(KEYS, JSON.stringify(keys));
  return keystore;
}

// A new random key, saved encrypted; the signer and its keystore (for a backup).
export async function createKey(passphrase) {
  checkPassphrase(passphrase);
  const wallet = Wallet.createRandom();
  const keystore = await store(wallet, passphrase);
  return { signer: remember(wallet), keystore };
}

export async function importKey(privateKey, passphrase) {
  checkPassphrase(passphrase);
  const hex = privateKey.trim().replace(/^0x/i, "");
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error("a private key is 64 hex digits (0x optional)");
  const wallet = new Wallet("0x" + hex);
  await store(wallet, passphrase);
  return remember(wallet);
}

export async function unlockKey(address, passphrase) {
  const keystore = storedKeys()[getAddress(address)];
  if (!keystore) throw new Error(`the key of ${address} is not kept in this browser`);
  let wallet;
  try {
    wallet = await Wallet.fromEncryptedJson(keystore, passphrase);
  } catch {
    throw new Error("wrong passphrase");
  }
  return remember(wallet);
}

export function forgetKey(address) {
  const keys = storedKeys();
  delete keys[getAddress(address)];
  localStorage.setItem(KEYS, JSON.stringify(keys));
  lock();
}

export function lock() {
  sessionStorage.removeItem(UNLOCKED);
}

function unlocked(address) {
  try {
    const kept = JSON.parse(sessionStorage.getItem(UNLOCKED) || "null");
    if (kept && getAddress(kept.address) === getAddress(address)) return new BrowserKeySigner(new Wallet(kept.privateKey));
  } catch {
    return null;
  }
  return null;
}

// Ask for the passphrase in the page's unlock dialog; the signer once unlocked.
function askToUnlock(address) {
  const dialog = document.getElementById("unlock-dialog");
  const form = document.getElementById("unlock-form");
  const input = document.getElementById("unlock-passphrase");
  document.getElementById("unlock-address").textContent = address;
  say("unlock-status", "");
  input.value = "";
  return new Promise((resolve, reject) => {
    const done = () => {
      form.removeEventListener("submit", onSubmit);
      document.getElementById("unlock-cancel").removeEventListener("click", onCancel);
    };
    const onSubmit = async (event) => {
      event.preventDefault();
      say("unlock-status", "Unlocking…");
      try {
        const signer = await unlockKey(address, input.value);
        done();
        dialog.close();
        resolve(signer);
      } catch (error) {
        say("unlock-status", error.message, "error");
      }
    };
    const onCancel = () => {
      done();
      dialog.close();
      reject(new Error("not signed: the key stayed locked"));
    };
    form.addEventListener("submit", onSubmit);
    document.getElementById("unlock-cancel").addEventListener("click", onCancel);
    dialog.showModal();
  });
}

// The signer of the signed-in account: the wallet it signed in with, unlocked if need be.
export async function currentSigner() {
  const { address } = config();
  const session = savedSession();
  if (!session || !address || getAddress(session.address) !== getAddress(address)) {
    throw new Error("this browser did not sign this account in; sign in again");
  }
  if (session.wallet === "injected") {
    const signer = await injectedSigner();
    if (signer.address !== getAddress(address)) {
      throw new Error(`your wallet is on account ${signer.address}; switch it to ${getAddress(address)}`);
    }
    return signer;
  }
  return unlocked(address) || askToUnlock(getAddress(address));
}
