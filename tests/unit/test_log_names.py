"""Every domain or provider module that logs shows up in the task log under a component name users know."""
from __future__ import annotations

from pathlib import Path

from chalicelib.steps.runtime import _LOGGER_NAMES

ROOT = Path(__file__).resolve().parents[2]


def test_every_logging_module_has_a_component_name():
    unnamed = []
    for package in ("pipeline", "providers"):
        for path in sorted((ROOT / "chalicelib" / package).rglob("*.py")):
            if "logging.getLogger(__name__)" in path.read_text(encoding="utf-8"):
                parts = path.relative_to(ROOT).with_suffix("").parts
                module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                if module not in _LOGGER_NAMES:
                    unnamed.append(module)
    assert not unnamed, f"add them to chalicelib/steps/runtime.py _LOGGER_NAMES: {unnamed}"
