// Table and column comments of a task's generated DDL, edited before loading: POST /tasks/{id}/tables/comments
// rewrites the DDL and MD files (the new DDL is checked on the server in a scratch schema, rolled back).
import { get, getFile, post, taskPath } from "./api.js";
import { highlightSql } from "./highlight.js";
import { t } from "./i18n.js";
import { card, clear, el, errorBox, field } from "./util.js";

const NOT_A_COLUMN = /^(primary|foreign|unique|constraint|check|exclude)\b/i;

/** {table, tableComment, columns: [{name, comment}]} read from a generated DDL file. */
export function parseDdl(text) {
  const lines = text.split("\n");
  const create = lines.map((l) => /^\s*create table\s+(\S+)\s*\(/i.exec(l)).find(Boolean);
  const titled = lines.map((l) => /^--\s*(?:中文名|Table comment|Comment)\s*[:：]\s*(.*)$/i.exec(l)).find(Boolean);
  const columns = [];
  let inside = false;
  for (const line of lines) {
    if (/^\s*create table/i.test(line)) { inside = true; continue; }
    if (!inside) continue;
    if (/^\s*\);?\s*$/.test(line)) break;
    const body = line.trim();
    if (!body || NOT_A_COLUMN.test(body)) continue;
    const match = /^("(?:[^"]|"")+"|[^\s]+)\s+.*?(?:--\s*(.*))?$/.exec(body);
    if (match) {
      columns.push({ name: match[1].replace(/^"|"$/g, "").replace(/""/g, '"'), comment: (match[2] || "").trim() });
    }
  }
  return { table: create ? create[1].replace(/"/g, "") : null, tableComment: titled ? titled[1].trim() : "", columns };
}

export function commentsEditor(taskId) {
  const picker = el("select", { "data-testid": "comment-table" });
  const form = el("div", { "data-testid": "comment-form" });
  const result = el("div", { "data-testid": "comment-result" });

  async function init() {
    try {
      const data = await get(taskPath(taskId, "/files"));
      const ddls = data.files.filter((f) => f.file_type === "ddl").map((f) => f.file_name);
      clear(picker).append(el("option", { value: "" }, t("comments.pick")),
        ...ddls.map((n) => el("option", { value: n }, n)));
    } catch (exc) {
      clear(form).append(errorBox(exc));
    }
  }

  async function open(fileName) {
    clear(form);
    clear(result);
    if (!fileName) return;
    let parsed;
    let text;
    try {
      text = await (await getFile(taskId, fileName)).text();
      parsed = parseDdl(text);
    } catch (exc) {
      form.append(errorBox(exc));
      return;
    }
    const tableInput = el("input", { size: 60, value: parsed.tableComment, "data-testid": "table-comment" });
    const inputs = parsed.columns.map((c) => ({ ...c, input: el("input", { size: 50, value: c.comment,
      "data-column": c.name }) }));
    async function save() {
      clear(result);
      const changed = Object.fromEntries(inputs.filter((c) => c.input.value !== c.comment)
        .map((c) => [c.name, c.input.value]));
      const body = { table: parsed.table, column_comments: changed,
        table_comment: tableInput.value !== parsed.tableComment ? tableInput.value : null };
      try {
        const saved = await post(taskPath(taskId, "/tables/comments"), body);
        await open(fileName); // the rewritten file, read back
        result.append(el("div", { class: "okmsg", "data-testid": "comments-saved" },
          t("comments.saved", { table: saved.table, files: (saved.files || []).join(", ") })));
      } catch (exc) {
        result.append(errorBox(exc));
      }
    }
    form.append(
      el("div", { class: "row" }, field(t("comments.table"), el("strong", {}, parsed.table || "?"))),
      el("div", { class: "row" }, field(t("comments.table_comment"), tableInput)),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, t("comments.column")),
        el("th", {}, t("comments.comment")))),
      el("tbody", {}, inputs.map((c) => el("tr", {}, el("td", {}, c.name), el("td", {}, c.input))))),
      el("div", { class: "row" }, el("button", { class: "primary", "data-testid": "save-comments", onclick: save },
        t("comments.save"))),
      el("details", {}, el("summary", {}, fileName), el("pre", { class: "code sql" }, highlightSql(text))));
  }

  picker.addEventListener("change", () => open(picker.value));
  init();
  return card(t("comments.title"), el("div", { class: "row" }, picker), form, result);
}
