// Small DOM helpers shared by the views.

// el("div", {class: "x", onclick: f}, "text", child, ...)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.flat().filter((c) => c !== undefined && c !== null));
  return node;
}

// The API's own error message in the view's error line (never a blank page).
export function showError(box, err) {
  box.textContent = err?.message || String(err);
  box.hidden = false;
}

export function clearError(box) {
  box.textContent = "";
  box.hidden = true;
}

export function errorBox() {
  return el("div", { class: "error", role: "alert", hidden: true });
}

// Run `fn`, showing any failure in `box`; buttons are disabled meanwhile.
export async function guarded(box, fn, button) {
  clearError(box);
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (err) {
    showError(box, err);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

export function field(label, input) {
  return el("label", { class: "field" }, el("span", {}, label), input);
}

// A number input's value, or undefined when empty (the API's default applies).
export function numberOrUndefined(input) {
  return input.value === "" ? undefined : Number(input.value);
}
