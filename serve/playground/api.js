// The graph's public API as the playground calls it: same routes and API keys as any client.
const KEY_STORAGE = "stackserve.apiKey";

// the application's root: the playground sits at <root>/playground/ (root is "" at route prefix "/")
export const base = location.pathname.replace(/\/playground(\/.*)?$/, "");

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

// An API failure, carrying the error envelope's message ({"error": {"message": ...}}).
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(json) {
  const h = {};
  if (apiKey()) h.Authorization = `Bearer ${apiKey()}`;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function raiseFor(res) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    message = body?.error?.message || message;
  } catch {
    // not JSON: keep the status line
  }
  throw new ApiError(res.status, message);
}

// JSON in, JSON out. `form` (a FormData) is sent as multipart instead of `body`.
export async function api(path, { method = "GET", body, form } = {}) {
  const init = { method, headers: headers(body !== undefined) };
  if (form) init.body = form;
  else if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(base + path, init);
  if (!res.ok) await raiseFor(res);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

// POST `body` and yield each SSE `data:` payload, parsed, as it arrives; ends at `[DONE]` or the stream's end.
// An error event in the stream (headers already sent) is raised as an ApiError.
export async function* sse(path, body) {
  const res = await fetch(base + path, { method: "POST", headers: headers(true), body: JSON.stringify(body) });
  if (!res.ok) await raiseFor(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const parsed = JSON.parse(data);
      if (parsed.error) throw new ApiError(0, parsed.error.message || "stream failed");
      yield parsed;
    }
  }
}
