// Agents: a Responses conversation (POST /v1/responses) with hosted tools: file_search over a vector store, an MCP
// server by URL, and web search where the graph has it configured (GET /v1/providers lists its tool_runtime
// provider). Every output item (a tool's call and result, a message) is shown as its own item. Answers stream over
// SSE, or run in the background: polled with GET /v1/responses/{id}, stopped with POST /v1/responses/{id}/cancel.
// Turns chain by previous_response_id.
import { api, sse } from "./api.js";
import { el, errorBox, field, guarded, numberOrUndefined } from "./ui.js";

const POLL_MS = 500;
const FINAL = new Set(["completed", "incomplete", "failed", "cancelled"]);
let previousId = null; // the last finished response: the next turn continues it
let reload = null;

function controls() {
  return {
    model: el("select", { id: "agent-model" }),
    instructions: el("textarea", { id: "agent-instructions", placeholder: "Instructions (optional)" }),
    input: el("textarea", { id: "agent-input", placeholder: "Ask something" }),
    maxTokens: el("input", { id: "agent-max-tokens", class: "num", type: "number", min: "1", value: "150" }),
    temperature: el("input", { id: "agent-temperature", class: "num", type: "number", step: "0.1", min: "0" }),
    toolChoice: el("select", { id: "agent-tool-choice" }, ...["auto", "required", "none"].map((c) => el("option", {}, c))),
    fileSearch: el("input", { id: "agent-file-search", type: "checkbox" }),
    store: el("select", { id: "agent-store" }),
    mcpUrl: el("input", { id: "agent-mcp-url", size: 36, placeholder: "http://host:port/mcp" }),
    mcpLabel: el("input", { id: "agent-mcp-label", size: 10, value: "mcp" }),
    mcpAllowed: el("input", { id: "agent-mcp-allowed", size: 24, placeholder: "all (comma separated names)" }),
    webSearch: el("input", { id: "agent-web-search", type: "checkbox" }),
    stream: el("input", { id: "agent-stream", type: "checkbox", checked: true }),
    background: el("input", { id: "agent-background", type: "checkbox" }),
  };
}

const names = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

function tools(c) {
  const out = [];
  if (c.fileSearch.checked) {
    if (!c.store.value) throw new Error("file_search needs a vector store: create one in the Knowledge view");
    out.push({ type: "file_search", vector_store_ids: [c.store.value], max_num_results: 3 });
  }
  if (c.mcpUrl.value.trim()) {
    const allowed = names(c.mcpAllowed.value);
    out.push({ type: "mcp", server_url: c.mcpUrl.value.trim(), server_label: c.mcpLabel.value.trim() || "mcp",
      allowed_tools: allowed.length ? allowed : undefined });
  }
  if (c.webSearch.checked) out.push({ type: "web_search" });
  return out;
}

function requestBody(c) {
  const t = tools(c);
  return {
    model: c.model.value, input: c.input.value, instructions: c.instructions.value.trim() || undefined,
    max_output_tokens: numberOrUndefined(c.maxTokens), temperature: numberOrUndefined(c.temperature),
    tools: t.length ? t : undefined, tool_choice: t.length ? c.toolChoice.value : undefined,
    include: c.fileSearch.checked ? ["file_search_call.results"] : undefined,
    previous_response_id: previousId || undefined,
  };
}

function errorText(e) {
  return typeof e === "string" ? e : e.message || e.content || JSON.stringify(e);
}

function annotation(a) {
  if (a.type === "url_citation") return el("a", { class: "cite", href: a.url, target: "_blank", rel: "noopener" }, a.title || a.url);
  return el("span", { class: "cite" }, a.filename || a.file_id || a.type);
}

// What each kind of output item shows under its header (type · label · status).
function itemBody(item) {
  switch (item.type) {
    case "message": {
      const parts = item.content || [];
      const notes = parts.flatMap((p) => p.annotations || []);
      return [el("div", { class: "answer agent-text" }, parts.map((p) => p.text ?? p.refusal ?? "").join("")),
        notes.length ? el("div", { class: "row" }, ...notes.map(annotation)) : null];
    }
    case "file_search_call":
      return [el("div", {}, "queries: ", el("code", {}, (item.queries || []).join(" | "))),
        ...(item.results || []).map((r) => el("div", { class: "chunk" },
          el("div", { class: "score" }, `${r.filename} · score ${Number(r.score).toFixed(3)}`), r.text))];
    case "web_search_call":
      return [el("div", {}, "query: ", el("code", {}, item.action?.query || "")),
        ...(item.action?.sources || []).map((s) => el("div", {},
          el("a", { href: s.url, target: "_blank", rel: "noopener" }, s.url)))];
    case "mcp_list_tools":
      return [el("div", {}, (item.tools || []).map((t) => t.name).join(", ") || "no tools")];
    case "mcp_call":
    case "mcp_approval_request":
    case "function_call":
      return [el("code", { class: "agent-call" }, `${item.name}(${item.arguments ?? ""})`),
        item.output !== undefined && item.output !== null ? el("pre", { class: "json agent-output" }, item.output)
          : null];
    default:
      return [el("pre", { class: "json" }, JSON.stringify(item, null, 2))];
  }
}

function fillItem(node, item) {
  node.dataset.type = item.type;
  node.dataset.status = item.status || "";
  const error = item.error ? el("div", { class: "error" }, errorText(item.error)) : null;
  node.replaceChildren(
    el("div", { class: "role" }, [item.type, item.server_label, item.status].filter(Boolean).join(" · ")),
    ...[...itemBody(item), error].filter(Boolean));
}

function itemView(item) {
  const node = el("div", { class: "panel agent-item" });
  fillItem(node, item);
  return node;
}

// One turn: the user's input, then the response's status (with Cancel while a background one runs) and items.
function turnView(input, model) {
  const t = {
    status: el("span", { class: "agent-status" }, "sending"),
    cancel: el("button", { class: "secondary agent-cancel", hidden: true }, "Cancel"),
    items: el("div", { class: "msg agent-items" }),
    stats: el("div", { class: "stats agent-stats" }),
  };
  t.node = el("div", { class: "msg agent-turn" }, el("div", { class: "role" }, "user"), el("div", {}, input),
    el("div", { class: "row" }, el("span", { class: "role" }, `response · ${model}`), t.status, t.cancel),
    t.items, t.stats);
  return t;
}

function showResponse(turn, r) {
  turn.status.textContent = `${r.id}: ${r.status}`;
  turn.status.dataset.status = r.status;
  turn.items.replaceChildren(...(r.output || []).map(itemView));
}

function statsLine(r, t0, tFirst) {
  const parts = [];
  const why = r.error?.message || r.incomplete_details?.reason;
  if (why) parts.push(`${r.status}: ${why}`);
  if (tFirst) parts.push(`first answer text at ${Math.round(tFirst - t0)} ms`); // after any tool calls
  if (r.usage) parts.push(`${r.usage.input_tokens} input + ${r.usage.output_tokens} output tokens`);
  parts.push(`${Math.round(performance.now() - t0)} ms total`);
  return parts.join(" · ");
}

// Streamed: items appear as they are added, the message's text grows with each delta; the final snapshot ends it.
async function streamTurn(body, turn) {
  const nodes = []; // by output_index
  let response = null;
  let tFirst = 0;
  for await (const ev of sse("/v1/responses", { ...body, stream: true })) {
    if (ev.response) {
      response = ev.response;
      turn.status.textContent = `${response.id}: ${response.status}`;
      turn.status.dataset.status = response.status;
    }
    if (ev.type === "response.output_item.added" || ev.type === "response.output_item.done") {
      if (nodes[ev.output_index]) fillItem(nodes[ev.output_index], ev.item);
      else turn.items.append(nodes[ev.output_index] = itemView(ev.item));
    } else if (ev.type === "response.output_text.delta") {
      tFirst ||= performance.now();
      const text = nodes[ev.output_index]?.querySelector(".agent-text");
      if (text) text.textContent += ev.delta;
    }
  }
  if (!response) throw new Error("the stream ended before the response started");
  return { response, tFirst };
}

// Background: created queued, polled until it ends; Cancel asks the server to stop it (the poll then sees it).
async function backgroundTurn(body, turn, errors) {
  let r = await api("/v1/responses", { method: "POST", body: { ...body, background: true } });
  const id = r.id;
  turn.cancel.hidden = false;
  turn.cancel.addEventListener("click", () => guarded(errors, async () => {
    showResponse(turn, await api(`/v1/responses/${id}/cancel`, { method: "POST" }));
  }, turn.cancel));
  try {
    while (!FINAL.has(r.status)) {
      showResponse(turn, r);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      r = await api(`/v1/responses/${id}`);
    }
  } finally {
    turn.cancel.hidden = true;
  }
  return { response: r, tFirst: 0 };
}

async function send(ctx) {
  const { c, log, errors } = ctx;
  const body = requestBody(c);
  const turn = turnView(body.input, body.model);
  log.prepend(turn.node);
  const t0 = performance.now();
  const run = () => {
    if (c.background.checked) return backgroundTurn(body, turn, errors);
    if (c.stream.checked) return streamTurn(body, turn);
    return api("/v1/responses", { method: "POST", body }).then((response) => ({ response, tFirst: 0 }));
  };
  const out = await run().catch((err) => {
    if (!turn.status.dataset.status) turn.node.remove(); // refused before it started: the error line says why
    throw err;
  });
  showResponse(turn, out.response);
  turn.stats.textContent = statsLine(out.response, t0, out.tFirst);
  if (out.response.status === "completed" || out.response.status === "incomplete") {
    previousId = out.response.id;
    ctx.thread.textContent = `continuing ${previousId}`;
  }
}

async function loadChoices(c, webLabel) {
  const models = (await api("/v1/models")).data.filter((m) => m.model_type !== "embedding");
  const keep = c.model.value;
  c.model.replaceChildren(...models.map((m) => el("option", { value: m.id }, m.id)));
  if (models.some((m) => m.id === keep)) c.model.value = keep;
  const stores = (await api("/v1/vector_stores?limit=100")).data;
  const store = c.store.value;
  c.store.replaceChildren(...stores.map((s) => el("option", { value: s.id }, s.name ? `${s.name} (${s.id})` : s.id)));
  if (stores.some((s) => s.id === store)) c.store.value = store;
  // web search is offered only where the graph runs a search provider (agents.web_search in its config)
  const providers = (await api("/v1/providers")).data;
  webLabel.hidden = !providers.some((p) => p.api === "tool_runtime" && p.provider_type.endsWith("-search"));
  if (webLabel.hidden) c.webSearch.checked = false;
}

export function mount(section) {
  const c = controls();
  const errors = errorBox();
  const log = el("div", { id: "agent-log", class: "msg" });
  const thread = el("span", { id: "agent-thread", class: "stats" }, "new conversation");
  const ctx = { c, log, errors, thread };
  const sendButton = el("button", { id: "agent-send" }, "Send");
  sendButton.addEventListener("click", () => guarded(errors, async () => {
    if (!c.input.value.trim()) return;
    await send(ctx);
    c.input.value = "";
  }, sendButton));
  const restart = el("button", { id: "agent-new", class: "secondary", onclick: () => {
    previousId = null;
    thread.textContent = "new conversation";
    log.replaceChildren();
  } }, "New conversation");
  const webLabel = el("label", { id: "agent-web-search-label", hidden: true }, c.webSearch, " web_search");
  section.append(
    el("div", { class: "panel" },
      el("div", { class: "row" }, field("Model", c.model), field("max_output_tokens", c.maxTokens),
        field("Temperature", c.temperature), field("tool_choice", c.toolChoice),
        el("label", { class: "field" }, el("span", {}, "Stream"), c.stream),
        el("label", { class: "field" }, el("span", {}, "Background"), c.background)),
      field("Instructions", c.instructions),
      el("h2", {}, "Tools"),
      el("div", { class: "row" }, el("label", {}, c.fileSearch, " file_search over"), c.store, webLabel),
      el("div", { class: "row" }, field("MCP server URL (optional)", c.mcpUrl), field("server_label", c.mcpLabel),
        field("allowed_tools", c.mcpAllowed)),
      field("Input", c.input),
      el("div", { class: "row" }, sendButton, restart, thread),
      errors),
    log);
  c.input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) sendButton.click();
  });
  reload = () => guarded(errors, () => loadChoices(c, webLabel));
}

export function show() {
  reload();
}
