// Vectors: rows per collection (GET /vector/stats), the backups with their sizes, restore after a confirmation.
import { get, post } from "./api.js";
import { t } from "./i18n.js";
import { card, clear, el, errorBox } from "./util.js";

const VECTOR = "/data_pipeline/vector";

export function render(root, { notify }) {
  const stats = el("div", { "data-testid": "vector-stats" });
  const backups = el("div", { "data-testid": "backups" });

  async function loadStats() {
    try {
      const data = await get(`${VECTOR}/stats`);
      clear(stats).append(el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, t("vectors.collection")), el("th", { class: "num" }, t("vectors.rows")))),
        el("tbody", {}, data.collections.map((c) => el("tr", { "data-collection": c.name },
          el("td", {}, c.name), el("td", { class: "num", "data-testid": `rows-${c.name}` }, String(c.rows))))),
        el("tfoot", {}, el("tr", {}, el("td", {}, `${t("vectors.total")} (${data.table})`),
          el("td", { class: "num", "data-testid": "rows-total" }, String(data.total))))));
    } catch (exc) {
      clear(stats).append(errorBox(exc));
    }
  }

  async function loadBackups() {
    try {
      const data = await get(`${VECTOR}/backups?limit=50`);
      clear(backups).append(data.backups.length ? el("table", {},
        el("thead", {}, el("tr", {}, ["vectors.task", "vectors.timestamp", "vectors.tables", "vectors.rows",
          "vectors.size", ""].map((k) => el("th", {}, k ? t(k) : "")))),
        el("tbody", {}, data.backups.map((b) => el("tr", { "data-backup": `${b.task_id}/${b.timestamp}` },
          el("td", {}, b.task_id), el("td", {}, b.timestamp),
          el("td", {}, Object.entries(b.tables).map(([name, v]) =>
            el("div", {}, `${name}: ${v.rows ?? "?"} ${t("vectors.rows_unit")} · ${v.bytes} B`))),
          el("td", { class: "num" }, String(b.total_rows ?? "")), el("td", { class: "num" }, b.total_size_human || ""),
          el("td", {}, el("button", { "data-action": "restore", onclick: () => confirmRestore(b) },
            t("vectors.restore")))))))
        : el("p", { class: "muted" }, t("vectors.no_backups")));
      if (data.truncated) backups.append(el("p", { class: "muted" }, t("vectors.truncated")));
    } catch (exc) {
      clear(backups).append(errorBox(exc));
    }
  }

  function confirmRestore(backup) {
    const modal = document.getElementById("modal");
    const truncate = el("input", { type: "checkbox", "data-testid": "restore-truncate", checked: true });
    const conflict = el("select", { "data-testid": "restore-conflict" },
      el("option", { value: "error" }, t("vectors.conflict_error")), el("option", { value: "skip" },
        t("vectors.conflict_skip")));
    const status = el("div");
    const close = () => { modal.hidden = true; clear(modal); };
    async function restore() {
      clear(status).append(el("p", { class: "muted" }, t("common.loading")));
      try {
        const done = await post(`${VECTOR}/restore`, { task_id: backup.task_id, timestamp: backup.timestamp,
          truncate_before_restore: truncate.checked, on_conflict: conflict.value });
        close();
        notify(t("vectors.restored", { n: done.total_restored, s: done.duration_seconds ?? "" }), "info");
        loadStats();
      } catch (exc) {
        clear(status).append(errorBox(exc));
      }
    }
    clear(modal).append(el("div", { class: "dialog", role: "dialog", "data-testid": "restore-dialog" },
      el("h2", {}, t("vectors.confirm_title")),
      el("p", {}, t("vectors.confirm_text", { task: backup.task_id, ts: backup.timestamp, n: backup.total_rows ?? "?" })),
      el("div", { class: "row" }, el("label", {}, truncate, " ", t("vectors.truncate_first"))),
      el("div", { class: "row" }, el("label", {}, t("vectors.on_conflict"), " ", conflict)),
      el("div", { class: "row" },
        el("button", { class: "primary danger", "data-testid": "confirm-restore", onclick: restore },
          t("vectors.confirm")),
        el("button", { onclick: close }, t("common.cancel"))),
      status));
    modal.hidden = false;
  }

  root.append(
    card(t("vectors.stats"), el("div", { class: "row" }, el("button", { "data-testid": "refresh-stats",
      onclick: () => { loadStats(); loadBackups(); } }, t("common.refresh"))), stats),
    card(t("vectors.backups"), backups));
  loadStats();
  loadBackups();
}
