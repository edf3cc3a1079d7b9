// Safety: one text against every shield (GET /v1/shields, POST /v1/safety/run-shield) and POST /v1/moderations.
import { api } from "./api.js";
import { el, errorBox, guarded } from "./ui.js";

function verdict(safe, text) {
  return el("span", { class: `verdict ${safe ? "safe" : "unsafe"}` }, text);
}

async function shieldRow(shield, text) {
  try {
    const r = await api("/v1/safety/run-shield", { method: "POST",
      body: { shield_id: shield.identifier, messages: [{ role: "user", content: text }], params: {} } });
    const v = r.violation;
    const shown = v ? verdict(false, `unsafe (${v.violation_level})`) : verdict(true, "safe");
    return el("tr", { "data-shield": shield.identifier }, el("td", {}, shield.identifier),
      el("td", {}, shield.provider_id), el("td", {}, shown),
      el("td", {}, v ? `${v.user_message || ""} ${JSON.stringify(v.metadata || {})}` : ""));
  } catch (err) {
    return el("tr", { "data-shield": shield.identifier }, el("td", {}, shield.identifier),
      el("td", {}, shield.provider_id), el("td", { class: "error" }, err.message), el("td", {}));
  }
}

function moderationView(result) {
  const flagged = Object.entries(result.categories).filter(([, v]) => v).map(([k]) => k);
  return el("div", { id: "moderation" }, verdict(!result.flagged, result.flagged ? "flagged" : "not flagged"),
    flagged.length ? ` · categories: ${flagged.join(", ")}` : "", result.user_message ? ` · ${result.user_message}` : "");
}

export function mount(section) {
  const errors = errorBox();
  const text = el("textarea", { id: "safety-text", placeholder: "Text to check" });
  const table = el("table", { id: "shield-results" });
  const moderation = el("div", {});
  const check = el("button", { id: "safety-check" }, "Check");
  check.addEventListener("click", () => guarded(errors, async () => {
    const shields = (await api("/v1/shields")).data;
    const rows = await Promise.all(shields.map((s) => shieldRow(s, text.value)));
    table.replaceChildren(el("tr", {}, el("th", {}, "Shield"), el("th", {}, "Provider"), el("th", {}, "Verdict"),
      el("th", {}, "Details")), ...rows);
    const mod = await api("/v1/moderations", { method: "POST", body: { input: text.value } });
    moderation.replaceChildren(el("h2", {}, `Moderations (${mod.model})`), ...mod.results.map(moderationView));
  }, check));
  section.append(el("div", { class: "panel" }, text, el("div", { class: "row" }, check), errors),
    el("div", { class: "panel" }, el("h2", {}, "Shields"), table, moderation));
}
