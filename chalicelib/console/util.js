// DOM helpers: every text goes in through textContent (never innerHTML), so data cannot become markup.
import { t } from "./i18n.js";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "value") node.value = value;
    else if (name === "checked") node.checked = Boolean(value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) { while (node.firstChild) node.firstChild.remove(); return node; }

export function badge(status, label) {
  return el("span", { class: `badge s-${String(status || "").toLowerCase()}`, "data-status": status },
    label || t(`status.${status}`));
}

export function seconds(start, end) {
  if (!start) return "";
  const a = Date.parse(start);
  const b = end ? Date.parse(end) : Date.now();
  if (Number.isNaN(a) || Number.isNaN(b)) return "";
  return `${Math.max(0, (b - a) / 1000).toFixed(1)} s`;
}

export function bar(done, total) {
  const pct = total ? Math.min(100, Math.round((100 * done) / total)) : 0;
  const fill = el("span");
  fill.style.width = `${pct}%`; // CSSOM, not a style attribute: the page's CSP allows no inline style
  return el("div", { class: "bar", title: `${done}/${total}` }, fill);
}

/** An error (ApiError or any) as a block of text: message, code, details. */
export function errorBox(exc) {
  const parts = [exc.message];
  if (exc.code) parts.push(`[${exc.code}]`);
  if (exc.details && exc.details !== exc.message) parts.push(exc.details);
  if (exc.status === 401) parts.push(`\n${t("key.needed")}`);
  return el("div", { class: "error", "data-testid": "error" }, parts.join(" "));
}

export function card(title, ...children) {
  return el("section", { class: "card" }, title ? el("h2", { text: title }) : null, ...children);
}

export function field(label, input) { return el("label", {}, label, " ", input); }

export function downloadBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name.split("/").pop() });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
