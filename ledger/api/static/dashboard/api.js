// Calls to the API with the signed-in key. The key lives in this tab's sessionStorage only:
// it is sent in the Authorization header, never put in a URL.

const KEY = "credit-ledger.key";
const ACCOUNT = "credit-ledger.account";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export const session = {
  key: () => sessionStorage.getItem(KEY),
  account: () => sessionStorage.getItem(ACCOUNT),
  save(key, account) {
    sessionStorage.setItem(KEY, key);
    sessionStorage.setItem(ACCOUNT, account);
  },
  clear() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ACCOUNT);
  },
};

// A fresh idempotency key for one click (crypto.randomUUID needs a secure context; this does not).
function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "dashboard-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return { title: response.statusText || `HTTP ${response.status}` };
  }
}

export async function request(path, { method = "GET", body, key = session.key(), raw = false } = {}) {
  const headers = { Authorization: `Bearer ${key}`, Accept: raw ? "*/*" : "application/json" };
  if (method !== "GET") headers["Idempotency-Key"] = newIdempotencyKey();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return raw ? response : response.json();
}

// Paths of the signed-in account.
export function accountPath(suffix = "") {
  return `/v1/accounts/${encodeURIComponent(session.account())}${suffix}`;
}
