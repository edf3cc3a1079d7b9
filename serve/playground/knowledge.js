// Knowledge: vector stores (/v1/vector_stores), file upload (/v1/files, then attach), search, and a Responses
// question answered with file_search, its citations linked to the chunks it found.
import { api } from "./api.js";
import { el, errorBox, field, guarded } from "./ui.js";

const state = { stores: [], selected: null };
let refresh = null;

function storeRow(store, errors, render) {
  const counts = store.file_counts || {};
  const del = el("button", { class: "secondary", onclick: async (e) => {
    e.stopPropagation();
    await guarded(errors, async () => {
      await api(`/v1/vector_stores/${store.id}`, { method: "DELETE" });
      if (state.selected === store.id) state.selected = null;
      await render();
    });
  } }, "Delete");
  return el("tr", { class: `clickable${state.selected === store.id ? " selected" : ""}`, "data-id": store.id,
    onclick: () => { state.selected = store.id; render(); } },
  el("td", {}, store.name || ""), el("td", {}, store.id),
  el("td", {}, `${counts.completed ?? 0} ready, ${counts.in_progress ?? 0} ingesting, ${counts.failed ?? 0} failed`),
  el("td", {}, del));
}

function storesPanel(errors) {
  const table = el("table", { id: "stores" });
  const name = el("input", { id: "store-name", placeholder: "name" });
  const render = async () => {
    await guarded(errors, async () => {
      state.stores = (await api("/v1/vector_stores?limit=100")).data;
      if (!state.selected && state.stores.length) state.selected = state.stores[0].id;
      table.replaceChildren(el("tr", {}, el("th", {}, "Name"), el("th", {}, "Id"), el("th", {}, "Files"),
        el("th", {})), ...state.stores.map((s) => storeRow(s, errors, render)));
    });
  };
  const create = el("button", { id: "store-create" }, "Create");
  create.addEventListener("click", () => guarded(errors, async () => {
    const store = await api("/v1/vector_stores", { method: "POST", body: { name: name.value || "playground" } });
    state.selected = store.id;
    name.value = "";
    await render();
  }, create));
  refresh = render;
  return el("div", { class: "panel" }, el("h2", {}, "Vector stores"), table,
    el("div", { class: "row" }, field("New store", name), create));
}

// Upload, attach to the selected store, then poll its ingestion until completed or failed.
async function ingest(file, list) {
  if (!state.selected) throw new Error("create or select a vector store first");
  const line = el("li", {}, `${file.name}: uploading`);
  list.append(line);
  const form = new FormData();
  form.append("purpose", "assistants");
  form.append("file", file);
  const uploaded = await api("/v1/files", { method: "POST", form });
  const storeId = state.selected;
  let status = await api(`/v1/vector_stores/${storeId}/files`, { method: "POST", body: { file_id: uploaded.id } });
  while (status.status === "in_progress") {
    line.textContent = `${file.name}: ingesting`;
    await new Promise((r) => setTimeout(r, 500));
    status = await api(`/v1/vector_stores/${storeId}/files/${uploaded.id}`);
  }
  line.textContent = `${file.name}: ${status.status}${status.last_error ? ` (${status.last_error.message})` : ""}`;
  line.className = `ingest-${status.status}`;
  await refresh();
}

function uploadPanel(errors) {
  const list = el("ul", { id: "uploads" });
  const input = el("input", { id: "file-input", type: "file", multiple: true });
  const take = (files) => guarded(errors, async () => {
    for (const f of files) await ingest(f, list);
  });
  input.addEventListener("change", () => take([...input.files]).then(() => { input.value = ""; }));
  const drop = el("div", { class: "drop", id: "drop-zone" }, "Drop files here to add them to the selected store");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    take([...e.dataTransfer.files]);
  });
  return el("div", { class: "panel" }, el("h2", {}, "Add files"), drop, input, list);
}

function chunkView(hit, id) {
  const text = (hit.content || []).map((c) => c.text).join("\n");
  return el("div", { class: "chunk", id }, el("div", { class: "score" },
    `${hit.filename || hit.file_id} · score ${Number(hit.score).toFixed(3)}`), text);
}

function searchPanel(errors) {
  const query = el("input", { id: "search-query", placeholder: "query", size: 40 });
  const mode = el("select", { id: "search-mode" }, ...["vector", "keyword", "hybrid"].map((m) => el("option", {}, m)));
  const results = el("div", { id: "search-results" });
  const go = el("button", { id: "search-go" }, "Search");
  go.addEventListener("click", () => guarded(errors, async () => {
    if (!state.selected) throw new Error("create or select a vector store first");
    const page = await api(`/v1/vector_stores/${state.selected}/search`, { method: "POST",
      body: { query: query.value, search_mode: mode.value, max_num_results: 5 } });
    results.replaceChildren(...(page.data.length ? page.data.map((h, i) => chunkView(h, `hit-${i}`))
      : [el("div", { class: "stats" }, "no results")]));
  }, go));
  return el("div", { class: "panel" }, el("h2", {}, "Search the selected store"),
    el("div", { class: "row" }, field("Query", query), field("Mode", mode), go), results);
}

// The answer's text with a [n] link after it per file_citation, each to the chunk of that file it was found in.
function citedAnswer(response) {
  const search = response.output.find((o) => o.type === "file_search_call");
  const message = [...response.output].reverse().find((o) => o.type === "message");
  const part = message?.content?.[0] || {};
  const chunks = (search?.results || []).map((r, i) => chunkView({ ...r, content: [{ text: r.text }] }, `cited-${i}`));
  const links = (part.annotations || []).filter((a) => a.type === "file_citation").map((a, n) => {
    const i = (search?.results || []).findIndex((r) => r.file_id === a.file_id);
    return el("a", { class: "cite", href: `#cited-${i}`, "data-file-id": a.file_id, title: a.filename,
      onclick: (e) => { e.preventDefault(); chunks[i]?.scrollIntoView(); chunks[i]?.classList.add("hl"); } },
    `[${n + 1}] ${a.filename}`);
  });
  // no message: the response failed, or ran out of max_output_tokens before it answered
  const reason = response.error?.message || response.incomplete_details?.reason;
  const why = message ? "" : `no answer: the response is ${response.status}${reason ? ` (${reason})` : ""}`;
  return [el("div", { class: "answer", id: "rag-answer" }, part.text ?? part.refusal ?? why, ...links),
    el("h2", {}, "Chunks found"), ...chunks];
}

function askPanel(errors) {
  const question = el("input", { id: "rag-question", placeholder: "question", size: 50 });
  const model = el("select", { id: "rag-model" });
  const maxTokens = el("input", { id: "rag-max-tokens", class: "num", type: "number", min: "1", value: "150" });
  const temperature = el("input", { id: "rag-temperature", class: "num", type: "number", step: "0.1", min: "0" });
  const out = el("div", { id: "rag-output", class: "msg" });
  const ask = el("button", { id: "rag-ask" }, "Ask");
  ask.addEventListener("click", () => guarded(errors, async () => {
    if (!state.selected) throw new Error("create or select a vector store first");
    const response = await api("/v1/responses", { method: "POST", body: {
      model: model.value, input: question.value, max_output_tokens: Number(maxTokens.value),
      temperature: temperature.value === "" ? undefined : Number(temperature.value), tool_choice: "required",
      tools: [{ type: "file_search", vector_store_ids: [state.selected], max_num_results: 3 }],
      include: ["file_search_call.results"] } });
    out.replaceChildren(...citedAnswer(response));
  }, ask));
  const loadModels = () => guarded(errors, async () => {
    const models = (await api("/v1/models")).data.filter((m) => m.model_type !== "embedding");
    model.replaceChildren(...models.map((m) => el("option", { value: m.id }, m.id)));
  });
  const previous = refresh;
  refresh = async () => { await previous(); if (!model.options.length) await loadModels(); };
  return el("div", { class: "panel" }, el("h2", {}, "Ask (Responses + file_search)"),
    el("div", { class: "row" }, field("Model", model), field("Question", question),
      field("max_output_tokens", maxTokens), field("Temperature", temperature), ask), out);
}

export function mount(section) {
  const errors = errorBox();
  section.append(errors, storesPanel(errors), uploadPanel(errors), searchPanel(errors), askPanel(errors));
}

export function show() {
  refresh();
}
