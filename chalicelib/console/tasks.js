// Tasks: the list (status filter, search through POST /tasks/query, pagination) and the create form.
import { ApiError, post, TASKS, taskPath } from "./api.js";
import { t } from "./i18n.js";
import { badge, card, clear, el, errorBox, field } from "./util.js";

const STATUSES = ["pending", "in_progress", "completed", "partial_completed", "failed", "cancelled"];
const STEPS = ["ddl_generation", "qa_generation", "sql_validation", "training_load"];
const FLAGS = ["enable_sql_validation", "enable_llm_repair", "modify_original_file", "enable_training_data_load",
  "backup_vector_tables", "truncate_vector_tables"];
// The guide's presets (§10.1): 推荐 / 调试 / 快速 / Vector清理.
export const PRESETS = {
  recommended: [true, true, true, true, false, false],
  debug: [false, false, false, false, false, false],
  fast: [true, false, false, true, false, false],
  vector_cleanup: [true, true, true, true, true, true],
};
const PAGE_SIZE = 10;

export function render(root, { go }) {
  const filters = { status: el("select", { "data-testid": "filter-status" },
    el("option", { value: "" }, t("common.all")), STATUSES.map((s) => el("option", { value: s }, t(`status.${s}`)))),
  task_name: el("input", { "data-testid": "filter-name" }), created_by: el("input", { size: 10 }),
  db_name: el("input", { size: 12 }), created_time_start: el("input", { type: "date" }),
  created_time_end: el("input", { type: "date" }) };
  const list = el("div", { "data-testid": "task-list" });
  let page = 1;

  async function load() {
    const body = { page, page_size: PAGE_SIZE };
    for (const [name, input] of Object.entries(filters)) if (input.value.trim()) body[name] = input.value.trim();
    clear(list).append(el("p", { class: "muted" }, t("common.loading")));
    try {
      renderList(await post(`${TASKS}/query`, body));
    } catch (exc) {
      clear(list).append(errorBox(exc));
    }
  }

  function renderList(data) {
    const rows = data.tasks.map((task) => el("tr", { "data-task": task.task_id },
      el("td", {}, el("a", { href: `#/run/${task.task_id}` }, task.task_id)),
      el("td", {}, task.task_name || ""), el("td", {}, badge(task.status)),
      el("td", {}, STEPS.map((s) => badge(task.step_status[s], t(`step.short.${s}`)))),
      el("td", {}, task.db_name || ""), el("td", {}, task.created_by || ""), el("td", {}, task.created_at),
      el("td", {}, ["run", "files", "review", "logs"].map((p) =>
        el("a", { href: `#/${p}/${task.task_id}`, class: "link" }, t(`nav.${p}`), " ")))));
    const p = data.pagination;
    clear(list).append(
      el("table", {}, el("thead", {}, el("tr", {}, ["tasks.id", "tasks.name", "tasks.status", "tasks.steps",
        "tasks.db", "tasks.creator", "tasks.created", "tasks.actions"].map((k) => el("th", {}, t(k))))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "muted" }, t("tasks.none"))))),
      el("div", { class: "pager" },
        el("button", { disabled: !p.has_prev, onclick: () => { page -= 1; load(); } }, t("common.prev")),
        el("span", { "data-testid": "page-info" }, t("common.page", { page: p.page, pages: p.total_pages || 1,
          total: p.total })),
        el("button", { disabled: !p.has_next, onclick: () => { page += 1; load(); } }, t("common.next"))));
  }

  const search = el("button", { class: "primary", onclick: () => { page = 1; load(); } }, t("common.search"));
  const form = createForm(go);
  form.hidden = true;
  root.append(
    card(t("tasks.title"),
      el("div", { class: "row" },
        field(t("tasks.status"), filters.status), field(t("tasks.name"), filters.task_name),
        field(t("tasks.creator"), filters.created_by), field(t("tasks.db"), filters.db_name),
        field(t("tasks.from"), filters.created_time_start), field(t("tasks.to"), filters.created_time_end),
        search, el("button", { "data-testid": "new-task", onclick: () => { form.hidden = !form.hidden; } },
          t("tasks.new"))),
      list),
    form);
  load();
}

function createForm(go) {
  const input = (attrs) => el("input", attrs);
  const name = input({ "data-testid": "create-name", size: 28 });
  const creator = input({ size: 12, value: "console" });
  const conn = input({ "data-testid": "create-conn", size: 52, placeholder: t("create.conn_placeholder") });
  const dbName = input({ size: 14, placeholder: t("create.db_placeholder") });
  const connResult = el("span", { "data-testid": "conn-result" });
  const schema = input({ size: 12, placeholder: "public" });
  const pattern = input({ size: 14, placeholder: "bss_*" });
  const picker = el("div", { class: "tables", "data-testid": "table-picker" });
  const picked = el("span", { class: "muted", "data-testid": "picked-count" });
  const context = el("textarea", { "data-testid": "create-context", rows: 3 });
  const flags = Object.fromEntries(FLAGS.map((f) => [f, el("input", { type: "checkbox", "data-flag": f })]));
  const result = el("div");

  const connection = () => (conn.value.trim() ? { db_connection: conn.value.trim() } : {});
  const countPicked = () => {
    const n = picker.querySelectorAll("input:checked").length;
    picked.textContent = t("create.picked", { n });
  };
  const applyPreset = (preset) => FLAGS.forEach((f, i) => { flags[f].checked = PRESETS[preset][i]; });
  applyPreset("recommended");

  async function testConnection() {
    connResult.className = "muted";
    connResult.textContent = t("common.loading");
    try {
      const data = await post("/database/tables", connection());
      connResult.className = "okmsg";
      connResult.textContent = t("create.conn_ok", { db: data.db_connection_info?.database || "", n: data.total });
    } catch (exc) {
      connResult.className = "error";
      connResult.textContent = `${t("create.conn_failed")}: ${exc.message}`;
    }
  }

  async function loadTables() {
    clear(picker).append(el("span", { class: "muted" }, t("common.loading")));
    const body = connection();
    if (schema.value.trim()) body.schema = schema.value.trim();
    if (pattern.value.trim()) body.table_name_pattern = pattern.value.trim();
    try {
      const data = await post("/database/tables", body);
      clear(picker).append(...data.tables.map((name) =>
        el("label", {}, el("input", { type: "checkbox", value: name, onchange: countPicked }), " ", name)));
      if (!data.tables.length) picker.append(el("span", { class: "muted" }, t("create.no_tables")));
    } catch (exc) {
      clear(picker).append(errorBox(exc));
    }
    countPicked();
  }

  const selectAll = (on) => { picker.querySelectorAll("input").forEach((box) => { box.checked = on; }); countPicked(); };

  async function create() {
    const tables = [...picker.querySelectorAll("input:checked")].map((box) => box.value);
    clear(result);
    if (!tables.length) { result.append(el("div", { class: "error" }, t("create.need_tables"))); return; }
    const body = { task_name: name.value.trim() || null, created_by: creator.value.trim() || null,
      business_context: context.value.trim() || null, db_name: dbName.value.trim() || null, ...connection() };
    for (const f of FLAGS) body[f] = flags[f].checked;
    try {
      const created = await post(TASKS, body);
      await post(taskPath(created.task_id, "/table-list"), { table_names: tables,
        business_context: body.business_context });
      go("run", created.task_id);
    } catch (exc) {
      result.append(errorBox(exc instanceof ApiError ? exc : new ApiError(0, null, String(exc))));
    }
  }

  return card(t("create.title"),
    el("div", { class: "row" }, field(t("tasks.name"), name), field(t("tasks.creator"), creator)),
    el("div", { class: "row" }, field(t("create.conn"), conn), field(t("tasks.db"), dbName),
      el("button", { "data-testid": "test-conn", onclick: testConnection }, t("create.test_conn")), connResult),
    el("h3", {}, t("create.tables")),
    el("div", { class: "row" }, field(t("create.schema"), schema), field(t("create.pattern"), pattern),
      el("button", { "data-testid": "load-tables", onclick: loadTables }, t("create.load_tables")),
      el("button", { onclick: () => selectAll(true) }, t("create.all")),
      el("button", { onclick: () => selectAll(false) }, t("create.none")), picked),
    picker,
    el("h3", {}, t("create.context")), context,
    el("h3", {}, t("create.flags")),
    el("div", { class: "row" }, Object.keys(PRESETS).map((p) =>
      el("button", { "data-preset": p, onclick: () => applyPreset(p) }, t(`preset.${p}`)))),
    el("div", { class: "row" }, FLAGS.map((f) => el("label", {}, flags[f], " ", t(`flag.${f}`)))),
    el("div", { class: "row" }, el("button", { class: "primary", "data-testid": "create-task", onclick: create },
      t("create.submit"))),
    result);
}
