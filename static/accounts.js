// Accounts over HTTP (docs/protocol.md): who the session signs in, signing in and out,
// creating an account, changing the password. The session is an HttpOnly cookie that no
// script can read: the server says who it signs in, and the WebSocket handshake carries it
// by itself. Every request goes to the page's own origin, the only one the server takes
// them from.

// What answers carry when the server could not be asked, or did not say why.
const UNREACHABLE = "The server could not be reached: check your connection and try again.";
const REFUSED = "The server refused this";

const JSON_BODY = { "content-type": "application/json" };
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "always" });

// {ok, status, data, error, detail, retryAfter}: `data` is the JSON body, `error` and
// `detail` its code and text when refused, `retryAfter` seconds (429, 503) or null.
async function ask(method, path, fields) {
  const request = { method, credentials: "same-origin", cache: "no-store" };
  if (fields !== undefined) {
    request.headers = JSON_BODY;
    request.body = JSON.stringify(fields);
  }
  let response;
  try {
    response = await fetch(path, request);
  } catch {
    return { ok: false, status: 0, data: {}, error: "unreachable", detail: UNREACHABLE, retryAfter: null };
  }
  let data = {};
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      // Not JSON (a proxy's error page): the status says what there is to say.
    }
  }
  return {
    ok: response.ok,
    status: response.status,
    data,
    error: data.error ?? "",
    detail: data.detail ?? (response.ok ? "" : `${REFUSED} (HTTP ${response.status}).`),
    retryAfter: seconds(response.headers.get("retry-after")),
  };
}

// Retry-After is seconds, or an HTTP date.
function seconds(header) {
  if (header === null) return null;
  const number = Number(header);
  if (Number.isFinite(number)) return Math.max(0, number);
  const date = Date.parse(header);
  return Number.isNaN(date) ? null : Math.max(0, (date - Date.now()) / 1000);
}

// {name, admin} of the account the session signs in, or null (signed out, or the server
// out of reach: signing on again will tell).
export async function currentAccount() {
  const answer = await ask("GET", "/api/session");
  return answer.ok ? answer.data : null;
}

export function signIn(name, password) {
  return ask("POST", "/api/session", { name, password });
}

export function register(name, password) {
  return ask("POST", "/api/account", { name, password });
}

export function signOut() {
  return ask("DELETE", "/api/session");
}

export function changePassword(password, newPassword) {
  return ask("POST", "/api/account/password", { password, new_password: newPassword });
}

// "Try again in 3 seconds.": when a throttled or busy server will listen again.
export function whenToRetry(retryAfter) {
  if (retryAfter === null) return "";
  const wait = Math.max(1, Math.ceil(retryAfter));
  if (wait < 60) return `Try again ${relative.format(wait, "second")}.`;
  if (wait < 3600) return `Try again ${relative.format(Math.ceil(wait / 60), "minute")}.`;
  return `Try again ${relative.format(Math.ceil(wait / 3600), "hour")}.`;
}

// The server's reason as a sentence, with when to try again if it said.
export function reasonOf(answer) {
  const detail = answer.detail.trim();
  const sentence = /[.!?]$/.test(detail) ? detail : `${detail}.`;
  const retry = answer.status === 429 || answer.status === 503 ? whenToRetry(answer.retryAfter) : "";
  return retry ? `${sentence} ${retry}` : sentence;
}

// The field of the sign-on form a refused sign-in or registration concerns: "name",
// "password", or "" for none (throttled, busy, registration closed, out of reach).
export function fieldOf(answer) {
  switch (answer.error) {
    case "wrong":
      return "password"; // the name or the password: the server does not say which, on purpose
    case "registered":
      return "name";
    case "invalid":
      return /password/i.test(answer.detail) ? "password" : "name";
    default:
      return "";
  }
}
