// The sign-in page: EIP-4361 message from the API, signed with personal_sign by the chosen key.

import { api, saveSession } from "../api.js";
import { action, say } from "../config.js";
import { createKey, forgetKey, importKey, injectedSigner, injectedWallet, lock, storedKeys, unlockKey } from "../wallet.js";

const STATUS = "sign-in-status";

async function signIn(signer) {
  say(STATUS, "Asking the exchange for a sign-in message…");
  const challenge = await api("POST", "/v1/auth/challenge", { address: signer.address });
  say(STATUS, "Signing the sign-in message…");
  const signature = await signer.signMessage(challenge.message);
  const session = await api("POST", "/v1/auth/sign-in", { message: challenge.message, signature });
  saveSession({ address: session.address, csrf: session.csrf_token, wallet: signer.kind });
  say(STATUS, `Signed in as ${session.address}.`, "ok");
  return session;
}

function showStoredKeys() {
  const addresses = Object.keys(storedKeys());
  const section = document.getElementById("stored-key");
  const select = document.getElementById("stored-address");
  select.replaceChildren(...addresses.map((address) => new Option(address, address)));
  section.hidden = addresses.length === 0;
}

export function initSignIn() {
  const root = document.getElementById("sign-in");
  const next = root.dataset.next || "/";
  const go = () => window.location.assign(next);
  showStoredKeys();

  if (injectedWallet()) {
    document.getElementById("injected-wallet").hidden = false;
    action(document.getElementById("sign-in-injected"), STATUS, async () => {
      lock();
      await signIn(await injectedSigner());
      go();
    });
  }

  action(document.getElementById("sign-in-stored"), STATUS, async () => {
    const address = document.getElementById("stored-address").value;
    say(STATUS, "Unlocking your key…");
    const signer = await unlockKey(address, document.getElementById("stored-passphrase").value);
    await signIn(signer);
    go();
  });

  action(document.getElementById("forget-key"), STATUS, async () => {
    const address = document.getElementById("stored-address").value;
    forgetKey(address);
    showStoredKeys();
    say(STATUS, `The key of ${address} is no longer kept in this browser.`, "ok");
  });

  action(document.getElementById("create-and-sign-in"), STATUS, async () => {
    const passphrase = document.getElementById("create-passphrase").value;
    if (passphrase !== document.getElementById("create-passphrase-again").value) {
      throw new Error("the two passphrases differ");
    }
    say(STATUS, "Creating and encrypting your key…");
    const { signer, keystore } = await createKey(passphrase);
    await signIn(signer);
    const link = document.getElementById("backup-link");
    link.href = URL.createObjectURL(new Blob([keystore], { type: "application/json" }));
    link.download = `metai-key-${signer.address}.json`;
    document.getElementById("backup").hidden = false;
    say(STATUS, `Signed in as ${signer.address}. Download the backup, then go on to your consents.`, "ok");
    const onward = document.createElement("a");
    onward.href = next;
    onward.textContent = " Go on.";
    document.getElementById(STATUS).append(onward);
  });

  action(document.getElementById("import-and-sign-in"), STATUS, async () => {
    say(STATUS, "Encrypting your key…");
    const signer = await importKey(document.getElementById("import-private-key").value,
      document.getElementById("import-passphrase").value);
    document.getElementById("import-private-key").value = "";
    await signIn(signer);
    go();
  });
}
