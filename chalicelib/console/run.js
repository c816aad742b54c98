// Run: execute the whole pipeline or one step, live progress per step and per table (polling with back-off),
// timings, LLM calls and tokens, cancel; a failed step shows its error and a re-run button.
import { get, post, taskPath } from "./api.js";
import { t } from "./i18n.js";
import { badge, bar, card, clear, el, errorBox, seconds } from "./util.js";

export const STEPS = ["ddl_generation", "qa_generation", "sql_validation", "training_load"];
const MIN_DELAY = 1000;
const MAX_DELAY = 10000;

export function render(root, { taskId, notify }) {
  const head = el("div");
  const controls = el("div", { class: "row" });
  const steps = el("div", { "data-testid": "steps" });
  const progress = el("div", { "data-testid": "progress" });
  const polling = el("span", { class: "muted", "data-testid": "polling" });
  let timer = null;
  let delay = MIN_DELAY;
  let lastSeen = "";
  let stopped = false;
  let kicks = 0;

  const stepSelect = el("select", { "data-testid": "step-select" },
    STEPS.map((s) => el("option", { value: s }, t(`step.${s}`))));

  async function execute(body) {
    try {
      const started = await post(taskPath(taskId, "/execute"), body);
      notify(t("run.started", { id: started.execution_id }), "info");
      delay = MIN_DELAY;
      kicks = 5;
      schedule(0);
    } catch (exc) {
      notify(`${exc.message}${exc.code ? ` [${exc.code}]` : ""}`);
    }
  }

  async function cancel() {
    try {
      await post(taskPath(taskId, "/cancel"));
      notify(t("run.cancel_sent"), "info");
      kicks = 3;
      schedule(0);
    } catch (exc) {
      notify(exc.message);
    }
  }

  controls.append(
    el("button", { class: "primary", "data-testid": "run-complete",
      onclick: () => execute({ execution_mode: "complete" }) }, t("run.complete")),
    stepSelect,
    el("button", { "data-testid": "run-step",
      onclick: () => execute({ execution_mode: "step", step_name: stepSelect.value }) }, t("run.step")),
    el("button", { class: "danger", "data-testid": "cancel", onclick: cancel }, t("run.cancel")),
    polling);

  function schedule(ms) {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(refresh, ms);
  }

  async function refresh() {
    let task;
    try {
      task = await get(taskPath(taskId));
    } catch (exc) {
      clear(head).append(errorBox(exc));
      schedule(delay = Math.min(MAX_DELAY, delay * 2));
      return;
    }
    draw(task);
    const seen = JSON.stringify([task.status, task.step_status, task.progress, task.current_step]);
    // After a start the task may not show in_progress on the very first read: poll a few times regardless.
    const busy = task.status === "in_progress" || kicks > 0;
    kicks = Math.max(0, kicks - 1);
    if (!busy) {
      polling.textContent = t("run.idle");
      return;
    }
    // Back-off: poll fast while things change, slower while nothing does.
    delay = seen === lastSeen ? Math.min(MAX_DELAY, Math.round(delay * 1.6)) : MIN_DELAY;
    lastSeen = seen;
    polling.textContent = t("run.polling", { s: (delay / 1000).toFixed(1) });
    schedule(delay);
  }

  function draw(task) {
    clear(head).append(el("div", { class: "row" },
      el("strong", {}, task.task_name || task.task_id), el("span", { class: "muted" }, task.task_id),
      badge(task.status), el("span", { class: "muted" }, `${t("tasks.db")}: ${task.db_name || ""}`),
      el("span", { class: "muted" }, `${t("run.duration")}: ${seconds(task.started_at, task.completed_at)}`)));
    if (task.error_message) head.append(el("div", { class: "error", "data-testid": "task-error" }, task.error_message));
    drawSteps(task);
    drawProgress(task);
  }

  function drawSteps(task) {
    const usage = task.llm_usage || {};
    const records = Object.fromEntries((task.steps || []).map((s) => [s.step_name, s]));
    const rows = STEPS.map((name) => {
      const rec = records[name] || {};
      const state = task.step_status?.[name] || rec.step_status || "pending";
      const llm = usage[name];
      const tokens = llm ? (llm.prompt_tokens || 0) + (llm.completion_tokens || 0) : null;
      return el("tr", { "data-step": name, "data-state": state },
        el("td", {}, t(`step.${name}`)), el("td", {}, badge(state)),
        el("td", {}, rec.started_at || ""), el("td", {}, rec.completed_at || ""),
        el("td", { class: "num" }, seconds(rec.started_at, rec.completed_at)),
        el("td", { class: "num" }, llm ? String(llm.calls ?? 0) : ""),
        el("td", { class: "num" }, tokens === null ? "" : String(tokens)),
        el("td", {}, llm?.provider || ""),
        el("td", {}, state === "failed" ? [
          el("div", { class: "error" }, rec.error_message || task.error_message || ""),
          el("button", { "data-testid": `rerun-${name}`, onclick: () =>
            execute({ execution_mode: "step", step_name: name }) }, t("run.rerun"))] : ""));
    });
    clear(steps).append(el("table", {},
      el("thead", {}, el("tr", {}, ["run.step_name", "tasks.status", "run.started_at", "run.finished", "run.duration",
        "run.llm_calls", "run.tokens", "run.provider", "run.error"].map((k) => el("th", {}, t(k))))),
      el("tbody", {}, rows)));
  }

  function drawProgress(task) {
    const p = task.progress || {};
    const blocks = [];
    const ddl = p.ddl_generation;
    if (ddl) {
      blocks.push(el("h3", {}, `${t("step.ddl_generation")} ${ddl.done}/${ddl.total}`), bar(ddl.done, ddl.total));
      if (ddl.current_table) blocks.push(el("div", { class: "muted" }, `${t("run.current")}: ${ddl.current_table}`));
      blocks.push(itemTable(ddl.tables || {}, "run.table", stepState(task, "ddl_generation"),
        (v) => [v.seconds != null ? `${v.seconds} s` : ""]));
    }
    const qa = p.qa_generation;
    if (qa) {
      blocks.push(el("h3", {}, `${t("step.qa_generation")} ${qa.done}/${qa.total}`), bar(qa.done, qa.total));
      blocks.push(itemTable(qa.themes || {}, "run.theme", stepState(task, "qa_generation"), (v) => [
        v.pairs != null ? t("run.pairs", { n: v.pairs }) : "", v.seconds != null ? `${v.seconds} s` : ""]));
    }
    const sv = p.sql_validation;
    if (sv) {
      blocks.push(el("h3", {}, `${t("step.sql_validation")} ${sv.done}/${sv.total}`), bar(sv.done, sv.total));
      blocks.push(itemTable(sv.batches || {}, "run.batch", stepState(task, "sql_validation"), (v) => [
        v.valid_after != null ? `${v.valid_after}/${v.total}` : `${v.total ?? ""}`]));
    }
    const load = task.results?.training_load;
    if (load) {
      blocks.push(el("h3", {}, t("step.training_load")), el("div", { "data-testid": "load-result" },
        t("run.loaded", { ddl: load.ddl ?? 0, doc: load.documentation ?? 0, sql: load.sql ?? 0 })));
    }
    clear(progress).append(...(blocks.length ? blocks : [el("p", { class: "muted" }, t("run.no_progress"))]));
  }

  const stepState = (task, name) => task.step_status?.[name] || "pending";

  // An item without its own `ok` (a validation batch) takes the state of its step once the step is over.
  function itemTable(items, label, state, extra) {
    const fallback = state === "running" || state === "pending" ? "running" : state;
    return el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, t(label)), el("th", {}, t("tasks.status")),
      el("th", {}, ""))), el("tbody", {}, Object.entries(items).map(([name, v]) =>
      el("tr", { "data-item": name }, el("td", {}, name),
        el("td", {}, badge(v.ok === false ? "failed" : v.ok ? "completed" : fallback)),
        el("td", {}, extra(v).filter(Boolean).join(" · "),
          v.error ? el("span", { class: "error" }, ` ${v.error}`) : "")))));
  }

  root.append(card(t("run.title"), head, controls), card(t("run.steps"), steps), card(t("run.progress"), progress));
  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
