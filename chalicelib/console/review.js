// Review: the pair file as an editable table (edit question or SQL, reject, add). Every edited or added SQL is
// checked by POST /tasks/{id}/sql/validate (read-only EXPLAIN on the server); the save (PUT /tasks/{id}/pairs)
// writes a new version or is refused with PostgreSQL's error per row. Load runs training_load on the latest
// version. Table and column comments are edited below (POST /tasks/{id}/tables/comments).
import { get, post, put, taskPath } from "./api.js";
import { commentsEditor } from "./comments.js";
import { t } from "./i18n.js";
import { card, clear, el, errorBox, field } from "./util.js";

export function render(root, { taskId, go, notify }) {
  const head = el("div", { class: "row" });
  const table = el("div", { "data-testid": "pairs" });
  const result = el("div", { "data-testid": "save-result" });
  const author = el("input", { "data-testid": "author", size: 12, value: "console" });
  const backup = el("input", { type: "checkbox", "data-testid": "load-backup", checked: true });
  let state = null; // {version, file_name, versions, rows: [{orig, question, sql, status, check}]}

  async function load(version) {
    clear(table).append(el("p", { class: "muted" }, t("common.loading")));
    try {
      const data = await get(taskPath(taskId, `/pairs${version ? `?version=${version}` : ""}`));
      state = { ...data, rows: data.pairs.map((p) => ({ orig: p, question: p.question, sql: p.sql,
        rejected: false, check: null })) };
      draw();
    } catch (exc) {
      clear(table).append(exc.status === 404 ? el("p", { class: "muted" }, t("review.no_pairs")) : errorBox(exc));
    }
  }

  const kind = (row) => (row.rejected ? "rejected" : !row.orig ? "added"
    : row.question !== row.orig.question || row.sql !== row.orig.sql ? "edited" : "same");

  async function validate(row) {
    row.check = { pending: true };
    drawRow(row);
    try {
      const answer = await post(taskPath(taskId, "/sql/validate"), { sql: row.sql });
      row.check = { valid: answer.valid, error: answer.error };
    } catch (exc) {
      row.check = { valid: false, error: exc.message };
    }
    drawRow(row);
  }

  function drawRow(row) {
    const k = kind(row);
    const check = row.check;
    const status = el("td", { "data-testid": "row-check" },
      el("div", {}, t(`review.kind.${k}`)),
      check?.pending ? el("div", { class: "muted" }, t("review.checking"))
        : check?.valid ? el("div", { class: "okmsg" }, t("review.valid"))
          : check ? el("div", { class: "error", "data-testid": "sql-error" }, check.error || t("review.invalid"))
            : null);
    const question = el("textarea", { rows: 2, value: row.question,
      oninput: (e) => { row.question = e.target.value; row.node.className = kind(row); } });
    const sql = el("textarea", { class: "sql", rows: 4, value: row.sql, "data-testid": "sql-input",
      oninput: (e) => { row.sql = e.target.value; row.check = null; row.node.className = kind(row); },
      onchange: () => { if (kind(row) === "edited" || kind(row) === "added") validate(row); } });
    const node = el("tr", { class: [k, check && check.valid === false ? "invalid" : ""].join(" ").trim(),
      "data-index": row.index },
      el("td", { class: "num" }, String(row.index + 1)), el("td", {}, question), el("td", {}, sql), status,
      el("td", { class: "actions" }, el("button", { "data-action": row.rejected ? "restore" : "reject",
        onclick: () => { row.rejected = !row.rejected; drawRow(row); } },
      row.rejected ? t("review.restore") : t("review.reject"))));
    if (row.node) row.node.replaceWith(node);
    row.node = node;
    return node;
  }

  function draw() {
    clear(head).append(
      el("span", {}, `${t("review.file")}: `, el("strong", { "data-testid": "pair-file" }, state.file_name)),
      field(t("review.version"), el("select", { "data-testid": "version-select",
        onchange: (e) => load(e.target.value) }, (state.versions || []).map((v) => el("option",
        { value: v.version, selected: v.version === state.version || null },
        `v${v.version} · ${v.author || ""} · ${v.created_at || ""}${v.summary ? ` · ${v.summary}` : ""}`)))),
      field(t("review.author"), author));
    state.rows.forEach((row, i) => { row.index = i; row.node = null; });
    clear(table).append(el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", { class: "q" }, t("review.question")),
        el("th", { class: "s" }, t("review.sql")), el("th", {}, t("review.check")), el("th", {}, ""))),
      el("tbody", {}, state.rows.map(drawRow))));
  }

  function addRow() {
    if (!state) return;
    const row = { orig: null, question: "", sql: "", rejected: false, check: null, index: state.rows.length };
    state.rows.push(row);
    table.querySelector("tbody").append(drawRow(row));
    row.node.querySelector("textarea").focus();
  }

  async function save() {
    if (!state) return;
    clear(result);
    const changed = state.rows.filter((r) => ["edited", "added"].includes(kind(r)));
    await Promise.all(changed.filter((r) => !r.check || r.check.pending).map(validate));
    const body = { base_version: state.version, author: author.value.trim() || "console",
      pairs: state.rows.filter((r) => !r.rejected).map((r) => ({ question: r.question, sql: r.sql })) };
    try {
      const saved = await put(taskPath(taskId, "/pairs"), body);
      await load();
      result.append(el("div", { class: "okmsg", "data-testid": "saved" }, saved.written === false
        ? t("review.unchanged", { version: saved.version })
        : t("review.saved", { version: saved.version, file: saved.file_name, n: saved.changes.length })),
      el("ul", {}, saved.changes.map((c) => el("li", {}, `${t(`review.op.${c.op}`)} #${c.index + 1}: `,
        c.after?.question || c.before?.question || ""))));
    } catch (exc) {
      result.append(errorBox(exc));
      const errors = exc.data?.errors || [];
      const sent = state.rows.filter((r) => !r.rejected);
      for (const e of errors) {
        const row = sent[e.index];
        if (row) { row.check = { valid: false, error: e.error }; drawRow(row); }
        result.append(el("div", { class: "error", "data-testid": "save-error" },
          `#${(row?.index ?? e.index) + 1}: ${e.error}`));
      }
    }
  }

  async function loadVectors() {
    if (state && state.rows.some((r) => kind(r) !== "same")) { notify(t("review.unsaved")); return; }
    try {
      await post(taskPath(taskId, "/execute"), { execution_mode: "step", step_name: "training_load",
        backup_vector_tables: backup.checked });
      go("run", taskId);
    } catch (exc) {
      notify(`${exc.message}${exc.code ? ` [${exc.code}]` : ""}`);
    }
  }

  root.append(
    card(`${t("review.title")} · ${taskId}`, head,
      el("div", { class: "row" },
        el("button", { "data-testid": "add-pair", onclick: addRow }, t("review.add")),
        el("button", { class: "primary", "data-testid": "save-pairs", onclick: save }, t("review.save")),
        el("button", { "data-testid": "load-pairs", onclick: loadVectors }, t("review.load")),
        el("label", {}, backup, " ", t("review.backup_first"))),
      result, table),
    commentsEditor(taskId));
  load();
}
