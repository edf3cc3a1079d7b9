// Graph: every deployment with its replicas and state (GET /v1/stackserve/graph), the engine load of each deployment
// that runs an engine (running / waiting requests, as one replica reports it), and batches with their progress
// (GET /v1/batches), refreshed every few seconds while the view is shown.
import { api } from "./api.js";
import { el, errorBox, guarded } from "./ui.js";

const REFRESH_MS = 3000;
let timer = null;
let reload = null;

function target(t) {
  if (t.num_replicas !== null && t.num_replicas !== undefined) return `${t.num_replicas}`;
  return `autoscaling ${t.min_replicas ?? "?"}-${t.max_replicas ?? "?"}` +
    (t.target_ongoing_requests ? ` (target ${t.target_ongoing_requests} ongoing)` : "");
}

// Only deployments that run an engine report a load (its batch and queue): the LLM deployments, and the Ingress when a
// model is served in_ingress; elsewhere Serve's status has no counts.
function load(e) {
  if (!e) return el("td", { class: "load stats" }, "-");
  const kv = e.kv_cache_usage === null || e.kv_cache_usage === undefined ? ""
    : ` · KV cache ${Math.round(100 * e.kv_cache_usage)}%`;
  return el("td", { class: "load", title: `engine of replica ${e.replica}` },
    `${e.running}${e.max_num_seqs ? `/${e.max_num_seqs}` : ""} running, ${e.waiting} waiting${kv}`);
}

function deploymentRow(d) {
  const states = Object.entries(d.replica_states).map(([s, n]) => `${n} ${s}`).join(", ") || "none";
  return el("tr", { "data-deployment": d.name }, el("td", {}, d.name),
    el("td", { class: `state-${d.status}` }, d.status), el("td", {}, `${d.running_replicas}`),
    el("td", {}, target(d.target)), el("td", {}, states), load(d.engine), el("td", { class: "stats" }, d.message));
}

function batchRow(b) {
  const c = b.request_counts || { total: 0, completed: 0, failed: 0 };
  const pct = c.total ? (100 * (c.completed + c.failed)) / c.total : 0;
  return el("tr", { "data-batch": b.id }, el("td", {}, b.id), el("td", {}, b.endpoint), el("td", {}, b.status),
    el("td", {}, el("div", { class: "progress" }, el("div", { style: `width:${pct}%` }))),
    el("td", {}, `${c.completed} done, ${c.failed} failed of ${c.total}`));
}

export function mount(section) {
  const errors = errorBox();
  const deployments = el("table", { id: "graph-deployments" });
  const batches = el("table", { id: "batches" });
  const title = el("h2", {}, "Deployments");
  reload = () => guarded(errors, async () => {
    const graph = await api("/v1/stackserve/graph");
    title.textContent = `Deployments of application ${graph.application}: ${graph.status}`;
    deployments.replaceChildren(el("tr", {}, ...["Deployment", "Status", "Running", "Target replicas",
      "Replica states", "Engine load", ""].map((h) => el("th", {}, h))), ...graph.deployments.map(deploymentRow));
    const page = await api("/v1/batches?limit=20");
    batches.replaceChildren(el("tr", {}, ...["Batch", "Endpoint", "Status", "Progress", ""].map((h) => el("th", {}, h))),
      ...page.data.map(batchRow));
  });
  section.append(errors, el("div", { class: "panel" }, title, deployments),
    el("div", { class: "panel" }, el("h2", {}, "Batches"), batches));
}

export function show() {
  reload();
  clearInterval(timer);
  timer = setInterval(reload, REFRESH_MS);
}

export function hide() {
  clearInterval(timer);
  timer = null;
}
