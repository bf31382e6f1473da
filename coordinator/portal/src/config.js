// What the page says about who is signed in and where the chain is (the body's data attributes).

export function config() {
  const data = document.body.dataset;
  return {
    page: data.page || "",
    address: data.address || "",
    rpcUrl: data.rpcUrl || "",
    chainId: Number(data.chainId || 0),
    consentRegistry: data.consentRegistry || "",
    studyRegistry: data.studyRegistry || "",
  };
}

// Show `text` in the status element `element` (a string id or the element), as plain text.
export function say(element, text, kind = "") {
  const target = typeof element === "string" ? document.getElementById(element) : element;
  if (!target) return;
  target.textContent = text;
  target.classList.remove("ok", "error");
  if (kind) target.classList.add(kind);
}

// Run `work` for a click on `button`: the button is disabled meanwhile, and any error is shown in
// `status` instead of escaping to the console.
export function action(button, status, work) {
  button.addEventListener("click", async (event) => {
    event.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    try {
      await work(event);
    } catch (error) {
      say(status, error instanceof Error ? error.message : String(error), "error");
    } finally {
      button.disabled = false;
    }
  });
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
