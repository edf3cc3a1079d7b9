// Traces: recent traces from the span store (POST /v1/telemetry/traces) and one trace as a waterfall
// (GET /v1/telemetry/traces/{id}, then the root span's tree: POST /v1/telemetry/spans/{span_id}/tree).
import { api } from "./api.js";
import { el, errorBox, guarded } from "./ui.js";

const GENAI = [
  ["gen_ai.request.model", "model"], ["gen_ai.latency.time_to_first_token", "TTFT s"],
  ["gen_ai.usage.input_tokens", "in"], ["gen_ai.usage.output_tokens", "out"],
  ["gen_ai.latency.time_in_model_decode", "decode s"], ["gen_ai.response.finish_reasons", "finish"],
];
let reload = null;

const ms = (iso) => new Date(iso).getTime();

function depthOf(span, byId) {
  let d = 0;
  for (let p = byId[span.parent_span_id]; p; p = byId[p.parent_span_id]) d++;
  return d;
}

function shown(value) {
  if (Array.isArray(value)) return value.join(",");
  return typeof value === "number" && !Number.isInteger(value) ? value.toFixed(3) : value;
}

function genaiText(attrs) {
  return GENAI.filter(([k]) => attrs[k] !== undefined && attrs[k] !== null)
    .map(([k, label]) => `${label} ${shown(attrs[k])}`).join(" · ");
}

// One row per span: its label (deployment · name) and a bar placed by start and duration within the trace.
function waterfall(spans) {
  const byId = Object.fromEntries(spans.map((s) => [s.span_id, s]));
  const t0 = Math.min(...spans.map((s) => ms(s.start_time)));
  const t1 = Math.max(...spans.map((s) => ms(s.end_time || s.start_time)));
  const total = Math.max(t1 - t0, 1);
  const rows = [...spans].sort((a, b) => ms(a.start_time) - ms(b.start_time)).map((s) => {
    const attrs = s.attributes || {};
    const start = ms(s.start_time) - t0;
    const dur = ms(s.end_time || s.start_time) - ms(s.start_time);
    const deployment = attrs["stackserve.deployment"] || "";
    const bar = el("div", { class: `span-bar${s.status === "error" ? " error" : ""}`,
      style: `left:${(100 * start) / total}%;width:${(100 * dur) / total}%`, title: `${dur} ms` });
    const genai = genaiText(attrs);
    return el("div", { class: "span-row", "data-deployment": deployment },
      el("div", { class: "span-label", style: `padding-left:${depthOf(s, byId)}em`, title: s.name },
        el("b", {}, deployment), ` · ${s.name} (${dur} ms)`),
      el("div", { class: "span-track" }, bar), genai ? el("div", { class: "span-attrs" }, genai) : null);
  });
  return el("div", { class: "waterfall", id: "waterfall" }, ...rows);
}

async function openTrace(traceId, target) {
  const trace = await api(`/v1/telemetry/traces/${traceId}`);
  const tree = await api(`/v1/telemetry/spans/${trace.root_span_id}/tree`, { method: "POST", body: {} });
  const spans = Object.values(tree.data);
  target.replaceChildren(el("h2", {}, `Trace ${traceId} · ${spans.length} spans`), waterfall(spans));
}

export function mount(section) {
  const errors = errorBox();
  const list = el("table", { id: "trace-list" });
  const detail = el("div", { class: "panel", id: "trace-detail" }, "Pick a trace");
  const refresh = el("button", { id: "traces-refresh" }, "Refresh");
  // by default only traces that reached a deployment past the ingress: not this page's own reads
  const scope = el("select", { id: "traces-scope", onchange: () => reload() },
    el("option", { value: "graph" }, "through the graph"), el("option", { value: "all" }, "all requests"));
  reload = () => guarded(errors, async () => {
    const filters = scope.value === "graph" ? [{ key: "stackserve.deployment", op: "ne", value: "Ingress" }] : [];
    const traces = (await api("/v1/telemetry/traces", { method: "POST",
      body: { limit: 25, attribute_filters: filters } })).data;
    const rootName = (t) => api(`/v1/telemetry/traces/${t.trace_id}/spans/${t.root_span_id}`).then((s) => s.name,
      () => "");
    const rootNames = await Promise.all(traces.map(rootName));
    list.replaceChildren(el("tr", {}, el("th", {}, "Started"), el("th", {}, "Root span"), el("th", {}, "Duration")),
      ...traces.map((t, i) => el("tr", { class: "clickable", "data-trace": t.trace_id,
        onclick: () => guarded(errors, () => openTrace(t.trace_id, detail)) },
      el("td", {}, new Date(t.start_time).toLocaleTimeString()), el("td", {}, rootNames[i]),
      el("td", {}, t.end_time ? `${ms(t.end_time) - ms(t.start_time)} ms` : "running"))));
  }, refresh);
  refresh.addEventListener("click", reload);
  section.append(el("div", { class: "panel" }, el("div", { class: "row" }, el("h2", {}, "Recent traces"), scope, refresh),
    errors, list), detail);
}

export function show() {
  reload();
}
