// The coordinator's /v1 API from the page: the session cookie goes along by itself, the CSRF token
// (kept from sign-in) goes in a header with every request that changes something.

const SESSION = "metai.session";

// The session sign-in saved: {address, csrf, wallet}, or null.
export function savedSession() {
  try {
    return JSON.parse(localStorage.getItem(SESSION) || "null");
  } catch {
    return null;
  }
}

export function saveSession(session) {
  localStorage.setItem(SESSION, JSON.stringify(session));
}

export function forgetSession() {
  localStorage.removeItem(SESSION);
}

// JSON with every integer kept exactly: one beyond 2**53 (a consent's "no expiry" is 2**64 - 1)
// becomes its decimal string, which wallets and the API take for a uint.
export function parseExact(text) {
  return JSON.parse(text, (key, value, context) => {
    if (typeof value === "number" && !Number.isSafeInteger(value) && Number.isInteger(value)) {
      if (!context || typeof context.source !== "string") {
        throw new Error("this browser cannot read large numbers exactly; use a current browser");
      }
      return context.source;
    }
    return value;
  });
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `the service answered HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") {
    const session = savedSession();
    if (session && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  }
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) {
    let problem = {};
    try {
      problem = JSON.parse(text);
    } catch {
      problem = { detail: text.slice(0, 200) };
    }
    if (response.status === 401) problem.detail = `${problem.detail || "not signed in"}. Sign in again.`;
    throw new ApiError(response.status, problem);
  }
  return text ? parseExact(text) : null;
}
