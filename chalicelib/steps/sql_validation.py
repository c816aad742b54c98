"""sql_validation: EXPLAIN every pair read-only, repair failures with the LLM, rewrite the pair file."""
from __future__ import annotations

import json
from typing import Any

from chalicelib.pipeline import qa, validation
from chalicelib.pipeline.models import QAPair
from chalicelib.providers.llm import get_llm_provider
from chalicelib.steps.blueprint import steps_bp
from chalicelib.steps.qa_generation import current_pair_file, load_table_docs
from chalicelib.steps.runtime import step_run

STEP = "sql_validation"
LOGGER = "SQLValidator"


@steps_bp.lambda_function(name="step_sql_validation")
def validate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with step_run(event, STEP, logger_name=LOGGER, starts_step=True) as run:
        file_name = current_pair_file(run)
        original = run.files.get_text(file_name)
        pairs = [QAPair.from_dict(item) for item in json.loads(original)]
        enable_repair = bool(run.params.get("enable_llm_repair", True))
        modify = bool(run.params.get("modify_original_file", True))
        llm = get_llm_provider(run.settings)
        run.log.info(f"Validating {len(pairs)} SQL statements from {file_name} (repair={enable_repair}, {llm.name})")
        report = validation.validate_pairs(
            run.db_url,
            pairs,
            llm=llm,
            docs=load_table_docs(run),
            enable_repair=enable_repair,
            max_rounds=run.settings.repair_max_rounds,
            timeout_ms=run.settings.statement_timeout_ms,
        )
        if report.repair_error:
            run.log.error(f"LLM repair stopped: {report.repair_error}; unrepaired pairs are treated as invalid")
        ts = run.run_ts
        run.files.put_text(
            f"sql_validation_{ts}_summary.log", validation.render_summary(report, file_name=file_name, ts=ts)
        )
        counts = report.counts()
        kept = validation.apply_report(pairs, report)
        changed = len(kept) != len(pairs) or any(a.sql != b.sql for a, b in zip(kept, pairs, strict=False))
        if modify and changed:
            # The original is kept beside the rewritten file; a second invocation must not back up the rewrite.
            if not run.files.exists(f"{file_name}.backup"):
                run.files.put_text(f"{file_name}.backup", original)
            run.files.put_text(file_name, qa.render_pairs_json(kept))
            run.files.put_text(f"file_modifications_{ts}.log", validation.render_modifications_log(report, ts))
            run.log.info(f"{file_name} rewritten: {len(kept)} pairs kept of {len(pairs)}")
        result = {
            **counts,
            "repair_error": report.repair_error,
            "pair_file": file_name,
            "file_modified": bool(modify and changed),
            "pairs_kept": len(kept),
        }
        run.log.info(f"sql_validation completed: {json.dumps(counts, ensure_ascii=False)}")
        run.tasks.mark_step_completed(run.task_id, STEP, result, llm.usage.to_dict())
        return {"pairs_kept": len(kept)}
