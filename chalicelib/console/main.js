// The console's shell: the key field, the language toggle, the navigation and a hash router (#/page/task_id).
import { getKey, setKey } from "./api.js";
import { getLang, setLang, t } from "./i18n.js";
import * as files from "./files.js";
import * as logs from "./logs.js";
import * as review from "./review.js";
import * as run from "./run.js";
import * as tasks from "./tasks.js";
import * as vectors from "./vectors.js";
import { clear, el } from "./util.js";

const PAGES = { tasks, run, logs, files, review, vectors };
const NEEDS_TASK = new Set(["run", "logs", "files", "review"]);
let currentTask = null;
let cleanup = null;

function parseHash() {
  const [page, taskId] = location.hash.replace(/^#\/?/, "").split("/");
  return { page: PAGES[page] ? page : "tasks", taskId: taskId ? decodeURIComponent(taskId) : null };
}

export function go(page, taskId) {
  const target = `#/${page}${taskId ? `/${encodeURIComponent(taskId)}` : ""}`;
  if (location.hash === target) route(); else location.hash = target;
}

function renderNav(active) {
  const nav = clear(document.getElementById("nav"));
  for (const page of Object.keys(PAGES)) {
    const needs = NEEDS_TASK.has(page);
    const href = `#/${page}${needs && currentTask ? `/${encodeURIComponent(currentTask)}` : ""}`;
    nav.append(el("a", { href, "data-page": page, class: [page === active ? "active" : "",
      needs && !currentTask ? "disabled" : ""].join(" ").trim() || null }, t(`nav.${page}`)));
  }
}

export function notify(message, kind = "error") {
  const box = document.getElementById("notice");
  box.textContent = message;
  box.className = `notice ${kind === "info" ? "info" : ""}`;
  box.hidden = !message;
}

function route() {
  if (cleanup) cleanup();
  cleanup = null;
  notify("");
  const { page, taskId } = parseHash();
  if (taskId) currentTask = taskId;
  renderNav(page);
  const root = clear(document.getElementById("page"));
  root.dataset.page = page;
  if (NEEDS_TASK.has(page) && !currentTask) {
    root.append(el("p", { class: "muted" }, t("common.pick_task")));
    return;
  }
  cleanup = PAGES[page].render(root, { taskId: currentTask, go, notify }) || null;
}

function applyLanguage() {
  document.documentElement.lang = getLang() === "en" ? "en" : "zh-CN";
  document.title = t("app.title");
  document.getElementById("app-title").textContent = t("app.title");
  document.getElementById("api-key-label").textContent = t("key.label");
  document.getElementById("api-key").placeholder = t("key.placeholder");
  document.getElementById("lang-toggle").textContent = t("lang.other");
}

function start() {
  const keyInput = document.getElementById("api-key");
  keyInput.value = getKey();
  keyInput.addEventListener("change", () => { setKey(keyInput.value); route(); });
  document.getElementById("lang-toggle").addEventListener("click", () => {
    setLang(getLang() === "zh" ? "en" : "zh");
    applyLanguage();
    route();
  });
  window.addEventListener("hashchange", route);
  applyLanguage();
  route();
}

start();
