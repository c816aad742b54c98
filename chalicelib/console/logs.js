// Logs: POST /tasks/{id}/logs/query with level, step, logger, keyword and time filters; follow mode re-reads
// the newest page every few seconds.
import { post, taskPath } from "./api.js";
import { t } from "./i18n.js";
import { card, clear, el, errorBox, field } from "./util.js";

const LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
const STEPS = ["prepare", "vector_backup", "vector_truncate", "ddl_generation", "qa_generation", "sql_validation",
  "training_load", "finalize"];
const FOLLOW_MS = 2000;

export function render(root, { taskId }) {
  const level = el("select", { "data-testid": "log-level" }, el("option", { value: "" }, t("common.all")),
    LEVELS.map((l) => el("option", { value: l }, l)));
  const step = el("select", { "data-testid": "log-step" }, el("option", { value: "" }, t("common.all")),
    STEPS.map((s) => el("option", { value: s }, t(`step.${s}`))));
  const logger = el("input", { size: 16 });
  const keyword = el("input", { "data-testid": "log-keyword", size: 16 });
  const start = el("input", { type: "datetime-local", step: 1 });
  const end = el("input", { type: "datetime-local", step: 1 });
  const follow = el("input", { type: "checkbox", "data-testid": "log-follow" });
  const out = el("div", { "data-testid": "log-list" });
  let page = 1;
  let timer = null;
  let stopped = false;

  async function load() {
    const body = { page, page_size: 50, sort_by: "timestamp", sort_order: "desc" };
    if (level.value) body.level = level.value;
    if (step.value) body.step_name = step.value;
    if (logger.value.trim()) body.logger_name = logger.value.trim();
    if (keyword.value.trim()) body.keyword = keyword.value.trim();
    if (start.value) body.start_time = start.value;
    if (end.value) body.end_time = end.value;
    try {
      draw(await post(taskPath(taskId, "/logs/query"), body));
    } catch (exc) {
      clear(out).append(errorBox(exc));
    }
    clearTimeout(timer);
    if (follow.checked && !stopped) timer = setTimeout(load, FOLLOW_MS);
  }

  function draw(data) {
    const p = data.pagination;
    clear(out).append(
      el("div", { class: "muted" }, t("logs.summary", { total: p.total, file: data.log_file_info?.file_size ?? 0 })),
      el("table", {}, el("thead", {}, el("tr", {}, ["logs.time", "logs.level", "logs.step", "logs.logger",
        "logs.message"].map((k) => el("th", {}, t(k))))),
      el("tbody", {}, data.logs.map((r) => el("tr", { class: `level-${r.level}` },
        el("td", { class: "nowrap" }, r.timestamp || ""), el("td", {}, r.level || ""), el("td", {}, r.step || ""),
        el("td", {}, r.logger || ""), el("td", {}, r.message || ""))))),
      el("div", { class: "pager" },
        el("button", { disabled: !p.has_prev, onclick: () => { page -= 1; load(); } }, t("common.prev")),
        el("span", {}, t("common.page", { page: p.page, pages: p.total_pages || 1, total: p.total })),
        el("button", { disabled: !p.has_next, onclick: () => { page += 1; load(); } }, t("common.next"))));
  }

  follow.addEventListener("change", () => { if (follow.checked) { page = 1; load(); } else clearTimeout(timer); });
  root.append(card(`${t("logs.title")} · ${taskId}`,
    el("div", { class: "row" }, field(t("logs.level"), level), field(t("logs.step"), step),
      field(t("logs.logger"), logger), field(t("logs.keyword"), keyword), field(t("logs.from"), start),
      field(t("logs.to"), end),
      el("button", { class: "primary", "data-testid": "log-search", onclick: () => { page = 1; load(); } },
        t("common.search")),
      el("label", {}, follow, " ", t("logs.follow"))),
    out));
  load();
  return () => { stopped = true; clearTimeout(timer); };
}
