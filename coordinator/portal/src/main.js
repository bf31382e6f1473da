// The portal's script (bundled with ethers into coordinator/portal/static/portal.js by
// `npm run build:portal`): each page's behaviour, chosen by the body's data-page.

import { api, forgetSession } from "./api.js";
import { action, config } from "./config.js";
import { initConsents } from "./pages/consents.js";
import { initDataUses } from "./pages/data-uses.js";
import { initSignIn } from "./pages/sign-in.js";
import { initStudy } from "./pages/study.js";
import { lock } from "./wallet.js";

const PAGES = { "sign-in": initSignIn, consents: initConsents, "data-uses": initDataUses, study: initStudy };

const signOut = document.getElementById("sign-out");
if (signOut) {
  action(signOut, null, async () => {
    try {
      await api("POST", "/v1/auth/sign-out");
    } finally {
      forgetSession();
      lock();
      window.location.assign("/sign-in");
    }
  });
}

const init = PAGES[config().page];
if (init) init();
