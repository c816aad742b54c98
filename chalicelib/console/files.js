// Files: the task's files (primary flag, sizes), a preview (DDL/SQL highlighted, Markdown rendered, JSON, text),
// the SQL validation summary, downloads (fetched with the key, saved from a Blob).
import { get, getFile, taskPath } from "./api.js";
import { highlightSql, markdownNode } from "./highlight.js";
import { t } from "./i18n.js";
import { card, clear, downloadBlob, el, errorBox } from "./util.js";

const SQL_TYPES = new Set(["ddl", "sql"]);

export function render(root, { taskId }) {
  const summary = el("div", { "data-testid": "validation-summary" });
  const list = el("div", { "data-testid": "file-list" });
  const preview = el("div", { "data-testid": "preview" }, el("p", { class: "muted" }, t("files.pick")));

  async function show(file) {
    clear(preview).append(el("h3", {}, file.file_name), el("p", { class: "muted" }, t("common.loading")));
    try {
      const text = await (await getFile(taskId, file.file_name)).text();
      preview.lastChild.remove();
      preview.append(previewNode(file, text));
    } catch (exc) {
      preview.lastChild.replaceWith(errorBox(exc));
    }
  }

  async function download(file) {
    try {
      downloadBlob(await getFile(taskId, file.file_name), file.file_name);
    } catch (exc) {
      clear(preview).append(errorBox(exc));
    }
  }

  async function load() {
    try {
      const [data, task] = await Promise.all([get(taskPath(taskId, "/files")), get(taskPath(taskId))]);
      drawSummary(task.results?.sql_validation);
      clear(list).append(el("table", {},
        el("thead", {}, el("tr", {}, ["files.name", "files.type", "files.size", "files.created", "files.primary",
          "files.description", ""].map((k) => el("th", {}, k ? t(k) : "")))),
        el("tbody", {}, data.files.map((f) => el("tr", { "data-file": f.file_name },
          el("td", {}, f.file_name), el("td", {}, f.file_type), el("td", { class: "num" }, f.file_size_human),
          el("td", {}, f.created_at || ""), el("td", {}, f.is_primary ? `★ ${t("files.primary")}` : ""),
          el("td", {}, f.description || ""),
          el("td", {}, el("button", { "data-action": "preview", onclick: () => show(f) }, t("files.preview")), " ",
            el("button", { "data-action": "download", onclick: () => download(f) }, t("files.download")))))),
        el("tfoot", {}, el("tr", {}, el("td", { colspan: 7, class: "muted" },
          t("files.total", { n: data.total_files, size: data.total_size_human || data.total_size }))))));
    } catch (exc) {
      clear(list).append(errorBox(exc));
    }
  }

  function drawSummary(sv) {
    clear(summary);
    if (!sv) { summary.append(el("p", { class: "muted" }, t("files.no_validation"))); return; }
    const items = [["files.sv_total", sv.total], ["files.sv_valid_before", sv.valid_before],
      ["files.sv_valid_after", sv.valid_after], ["files.sv_repaired", sv.repaired], ["files.sv_dropped", sv.dropped],
      ["files.sv_rate", sv.success_rate != null ? `${sv.success_rate}%` : ""]];
    summary.append(el("div", { class: "row" }, items.map(([k, v]) =>
      el("span", { class: "badge" }, `${t(k)}: ${v ?? ""}`))));
    if (sv.repair_error) summary.append(el("div", { class: "error" }, sv.repair_error));
  }

  root.append(card(`${t("files.validation")}`, summary), card(`${t("files.title")} · ${taskId}`, list),
    card(t("files.preview"), preview));
  load();
}

/** How a file is shown: SQL-like files highlighted, Markdown rendered (escaped first), JSON pretty-printed. */
export function previewNode(file, text) {
  const name = file.file_name.toLowerCase();
  if (SQL_TYPES.has(file.file_type) || name === "metadata.txt") {
    return el("pre", { class: "code sql", "data-kind": "sql" }, highlightSql(text));
  }
  if (file.file_type === "md" || name.endsWith(".md")) return markdownNode(text);
  if (file.file_type === "json") {
    let pretty = text;
    try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch { pretty = text; }
    return el("pre", { class: "code", "data-kind": "json" }, pretty);
  }
  return el("pre", { class: "code", "data-kind": "text" }, text);
}
