// Chat: POST /v1/chat/completions, streamed over SSE so the answer grows as tokens arrive.
import { api, sse } from "./api.js";
import { el, errorBox, field, guarded, numberOrUndefined } from "./ui.js";

let history = []; // the conversation so far, without the system prompt
let reloadModels = null;

function controls() {
  return {
    model: el("select", { id: "chat-model" }),
    system: el("textarea", { id: "chat-system", placeholder: "System prompt (optional)" }),
    prompt: el("textarea", { id: "chat-prompt", placeholder: "Say something" }),
    temperature: el("input", { id: "chat-temperature", class: "num", type: "number", step: "0.1", min: "0" }),
    topP: el("input", { id: "chat-top-p", class: "num", type: "number", step: "0.05", min: "0", max: "1" }),
    maxTokens: el("input", { id: "chat-max-tokens", class: "num", type: "number", min: "1", value: "128" }),
    seed: el("input", { id: "chat-seed", class: "num", type: "number" }),
    stop: el("input", { id: "chat-stop", placeholder: "comma separated" }),
    schema: el("textarea", { id: "chat-schema", placeholder: '{"type": "object", "properties": {...}}' }),
    tool: el("textarea", { id: "chat-tool",
      placeholder: '{"name": "get_weather", "description": "...", "parameters": {"type": "object", ...}}' }),
    forceTool: el("input", { id: "chat-force-tool", type: "checkbox" }),
    stream: el("input", { id: "chat-stream", type: "checkbox", checked: true }),
  };
}

function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`the ${what} does not parse as JSON: ${err.message}`);
  }
}

// The request body from the controls: sampling parameters, stop strings, a JSON schema as response_format, one
// function tool.
function requestBody(c, messages) {
  const body = {
    model: c.model.value, messages, temperature: numberOrUndefined(c.temperature), top_p: numberOrUndefined(c.topP),
    max_tokens: numberOrUndefined(c.maxTokens), seed: numberOrUndefined(c.seed),
  };
  const stop = c.stop.value.split(",").map((s) => s.trim()).filter(Boolean);
  if (stop.length) body.stop = stop;
  if (c.schema.value.trim()) {
    const schema = parseJson(c.schema.value, "JSON schema");
    body.response_format = { type: "json_schema", json_schema: { name: "answer", schema, strict: true } };
  }
  if (c.tool.value.trim()) {
    const fn = parseJson(c.tool.value, "function");
    body.tools = [{ type: "function", function: fn }];
    // forced on the first turn only: after the results come back the model answers
    const forced = c.forceTool.checked && messages.at(-1)?.role === "user";
    if (forced) body.tool_choice = { type: "function", function: { name: fn.name } };
  }
  return body;
}

function statsLine(t0, tFirst, tEnd, usage) {
  const parts = [];
  if (tFirst) parts.push(`TTFT ${Math.round(tFirst - t0)} ms`);
  if (usage) {
    parts.push(`${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`);
    const decodeS = (tEnd - (tFirst || t0)) / 1000;
    if (decodeS > 0 && usage.completion_tokens > 1) {
      parts.push(`${((usage.completion_tokens - 1) / decodeS).toFixed(1)} tokens/s`);
    }
  }
  parts.push(`${Math.round(tEnd - t0)} ms total`);
  return parts.join(" · ");
}

// Streamed tool calls arrive in pieces, by index: the first names the call, the rest add to its arguments.
function addToolCallDeltas(calls, deltas) {
  for (const d of deltas || []) {
    const call = calls[d.index] || (calls[d.index] = { id: "", type: "function", function: { name: "", arguments: "" } });
    if (d.id) call.id = d.id;
    if (d.function?.name) call.function.name += d.function.name;
    if (d.function?.arguments) call.function.arguments += d.function.arguments;
  }
}

// Fill `text` (an element) as the answer arrives; returns {content, toolCalls, usage, tFirst}.
async function runStream(body, text) {
  let content = "";
  let usage = null;
  let tFirst = 0;
  const toolCalls = [];
  const stream = sse("/v1/chat/completions", { ...body, stream: true, stream_options: { include_usage: true } });
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    const delta = chunk.choices?.[0]?.delta || {};
    if ((delta.content || delta.tool_calls) && !tFirst) tFirst = performance.now();
    addToolCallDeltas(toolCalls, delta.tool_calls);
    if (delta.content) {
      content += delta.content;
      text.textContent = content;
    }
  }
  return { content, toolCalls: toolCalls.filter(Boolean), usage, tFirst };
}

async function runOnce(body, text) {
  const r = await api("/v1/chat/completions", { method: "POST", body });
  const content = r.choices[0].message.content || "";
  text.textContent = content;
  return { content, toolCalls: r.choices[0].message.tool_calls || [], usage: r.usage, tFirst: 0 };
}

function parsedJson(content) {
  try {
    return el("pre", { class: "json parsed-json" }, JSON.stringify(JSON.parse(content), null, 2));
  } catch (err) {
    return el("div", { class: "error" }, `the answer is not valid JSON: ${err.message}`);
  }
}

// The model's tool calls, each with a field for its result; "Send results" continues the conversation with them.
function toolCallsView(ctx, calls) {
  const results = calls.map(() => el("input", { class: "chat-tool-result", size: 50, placeholder: "result (JSON)" }));
  const button = el("button", { class: "chat-tool-send" }, "Send results");
  button.addEventListener("click", () => guarded(ctx.errors, () => send(ctx, calls.map((call, i) => (
    { role: "tool", tool_call_id: call.id, content: results[i].value })), "tool results"), button));
  return el("div", { class: "panel chat-tool-calls" }, ...calls.map((call, i) => el("div", { class: "row" },
    el("code", { class: "chat-tool-call" }, `${call.function.name}(${call.function.arguments})`), results[i])),
  button);
}

// One exchange: `added` (the user's message, or tool results) after the history, the answer streamed into a turn.
async function send(ctx, added, label) {
  const { c, log } = ctx;
  const system = c.system.value.trim() ? [{ role: "system", content: c.system.value }] : [];
  const body = requestBody(c, [...system, ...history, ...added]);
  const text = el("div", { class: "answer chat-answer" });
  const stats = el("div", { class: "stats chat-stats" });
  const turn = el("div", { class: "msg" }, el("div", { class: "role" }, label),
    el("div", {}, added.map((m) => m.content).join("\n")),
    el("div", { class: "role" }, `assistant · ${body.model}`), text, stats);
  log.prepend(turn);
  const t0 = performance.now();
  const out = await (c.stream.checked ? runStream(body, text) : runOnce(body, text)).catch((err) => {
    turn.remove();
    throw err;
  });
  stats.textContent = statsLine(t0, out.tFirst, performance.now(), out.usage);
  if (body.response_format) turn.append(parsedJson(out.content));
  const answer = { role: "assistant", content: out.content || null };
  if (out.toolCalls.length) {
    answer.tool_calls = out.toolCalls;
    turn.append(toolCallsView(ctx, out.toolCalls));
  }
  history = [...history, ...added, answer];
}

async function loadModels(select, errors) {
  await guarded(errors, async () => {
    const models = (await api("/v1/models")).data.filter((m) => m.model_type !== "embedding");
    const keep = select.value;
    select.replaceChildren(...models.map((m) => el("option", { value: m.id }, m.id)));
    if (models.some((m) => m.id === keep)) select.value = keep;
  });
}

export function mount(section) {
  const c = controls();
  const errors = errorBox();
  const log = el("div", { id: "chat-log", class: "msg" });
  const sendButton = el("button", { id: "chat-send" }, "Send");
  sendButton.addEventListener("click", () => guarded(errors, async () => {
    if (!c.prompt.value.trim()) return;
    await send({ c, log, errors }, [{ role: "user", content: c.prompt.value }], "user");
    c.prompt.value = "";
  }, sendButton));
  const clear = el("button", { class: "secondary", onclick: () => { history = []; log.replaceChildren(); } },
    "New chat");
  section.append(
    el("div", { class: "panel" },
      el("div", { class: "row" }, field("Model", c.model), field("Temperature", c.temperature),
        field("top_p", c.topP), field("max_tokens", c.maxTokens), field("Seed", c.seed), field("Stop", c.stop),
        el("label", { class: "field" }, el("span", {}, "Stream"), c.stream)),
      field("System prompt", c.system),
      field("Structured output: JSON schema (optional)", c.schema),
      field("Tool: one function definition (optional)", c.tool),
      el("label", {}, c.forceTool, " force a call of it"),
      field("Message", c.prompt),
      el("div", { class: "row" }, sendButton, clear),
      errors),
    log);
  c.prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) sendButton.click();
  });
  reloadModels = () => loadModels(c.model, errors);
}

export function show() {
  reloadModels();
}
