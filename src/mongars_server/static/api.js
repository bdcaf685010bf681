// The HTTP client of the console: JSON requests to /api/v1 with the bearer
// token, and server errors turned into ApiError.
import { state } from "/static/state.js";

const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, message, code = null, items = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.items = items; // field-level messages of a 422
  }
}

// What a 401 on an authenticated request does (session.js ends the session).
let onUnauthorized = () => {};
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

export function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return "c-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fieldName(loc) {
  if (!Array.isArray(loc)) return "";
  return loc.filter((part) => !["body", "query", "path"].includes(part)).join(".");
}

// Turn an error body ({detail, code}; a 422 detail may be a list of {loc, msg}) into an ApiError.
function errorFrom(response, body) {
  const detail = body && body.detail;
  const code = (body && body.code) || null;
  if (Array.isArray(detail)) {
    const items = detail.map((e) => {
      const field = fieldName(e && e.loc);
      const msg = (e && e.msg) || String(e);
      return field ? `${field}: ${msg}` : msg;
    });
    return new ApiError(response.status, "Please correct the following:", code, items);
  }
  if (typeof detail === "string" && detail) return new ApiError(response.status, detail, code);
  const reason = response.statusText ? ` ${response.statusText}` : "";
  return new ApiError(response.status, `Request failed (${response.status}${reason}).`, code);
}

export async function api(path, { method = "GET", body, auth = true } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && state.token) headers.Authorization = `Bearer ${state.token}`;
  let response;
  try {
    response = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "Cannot reach the server. Check your connection and try again.", "network");
  }
  const text = response.status === 204 ? "" : await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = errorFrom(response, data);
    if (response.status === 401 && auth && state.token) onUnauthorized();
    throw error;
  }
  return data;
}
