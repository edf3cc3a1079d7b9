// Tabs and the API key; each view mounts on first show (and may start/stop work on show/hide).
import * as agents from "./agents.js";
import { apiKey, setApiKey } from "./api.js";
import * as chat from "./chat.js";
import * as graph from "./graph.js";
import * as knowledge from "./knowledge.js";
import * as safety from "./safety.js";
import * as traces from "./traces.js";

const views = { chat, knowledge, agents, safety, traces, graph };
const mounted = new Set();
let current = null;

function show(name) {
  if (!views[name]) name = "chat";
  if (current && views[current].hide) views[current].hide();
  for (const [n] of Object.entries(views)) {
    document.getElementById(`view-${n}`).hidden = n !== name;
  }
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === name);
  const section = document.getElementById(`view-${name}`);
  if (!mounted.has(name)) {
    mounted.add(name);
    views[name].mount(section);
  }
  if (views[name].show) views[name].show();
  current = name;
}

const keyInput = document.getElementById("api-key");
keyInput.value = apiKey();
keyInput.addEventListener("change", () => {
  setApiKey(keyInput.value.trim());
  if (current && views[current].show) views[current].show();
});

for (const b of document.querySelectorAll("#tabs button")) {
  b.addEventListener("click", () => {
    location.hash = b.dataset.view;
  });
}
window.addEventListener("hashchange", () => show(location.hash.slice(1)));
show(location.hash.slice(1));
