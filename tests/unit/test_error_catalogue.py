"""The error classes are built from chalicelib/data/errors.json; these checks stand in for what a type checker
would see in hand-written classes."""
from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

from chalicelib import errors
from chalicelib.api.error_codes import ERROR_CODES
from chalicelib.config import STEP_NAMES

ROOT = Path(__file__).resolve().parents[2]


def _imported_error_names() -> set[tuple[str, str]]:
    found = set()
    folders = ("chalicelib", "infra", "tests", "benchmarks")
    paths = [ROOT / "app.py", *(p for d in folders for p in (ROOT / d).rglob("*.py"))]
    for path in (p for p in paths if p != Path(__file__).resolve()):  # this file imports a missing name on purpose
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "chalicelib.errors":
                found.update((str(path.relative_to(ROOT)), alias.name) for alias in node.names)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "errors" \
                    and node.attr[:1].isupper():
                found.add((str(path.relative_to(ROOT)), node.attr))
    return found


def test_every_imported_error_class_is_in_the_catalogue():
    unknown = sorted(f"{where}: {name}" for where, name in _imported_error_names() if name not in errors.__all__)
    assert not unknown, unknown
    assert len(_imported_error_names()) > 20  # the scan itself finds the imports


def test_classes_follow_the_catalogue():
    for entry in errors.CATALOGUE["classes"]:
        cls = getattr(errors, entry["class"])
        assert issubclass(cls, errors.DataPipelineError)
        if "parent" in entry:
            assert cls.__bases__ == (getattr(errors, entry["parent"]),)
        parent = cls.__bases__[0]
        assert cls.code == entry.get("code", getattr(parent, "code", None))
        assert cls.status == entry.get("status", getattr(parent, "status", None))
        assert cls.code in ERROR_CODES and cls.__doc__


def test_catalogue_values_reach_the_classes():
    assert (errors.InvalidConnectionString.code, errors.InvalidConnectionString.status) == \
        ("DATABASE_CONNECTION_ERROR", 400)
    assert errors.DatabaseConnectionError.status == 500
    assert ERROR_CODES["DATABASE_CONNECTION_ERROR"][0] == 400
    assert ERROR_CODES["INVALID_STEP_NAME"][1].endswith(", ".join(STEP_NAMES))  # the catalogue names every step
    assert ERROR_CODES["METHOD_NOT_ALLOWED"] == (405, "the path exists but not with this HTTP method")


def test_error_instances_survive_pickling_and_keep_their_fields():
    exc = errors.InvalidTableName("bad name", invalid_params=["table_list"])
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is errors.InvalidTableName and back.args == ("bad name",)
    with pytest.raises(errors.ValidationError):
        raise exc


def test_unknown_class_name_fails_to_import():
    with pytest.raises(ImportError):
        from chalicelib.errors import NoSuchError  # noqa: F401
