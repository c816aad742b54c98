"""The `Handler` of every packaged Lambda is the string Chalice builds (`{blueprint import name}.{function name}`);
AWS imports that module and looks that name up, so each must resolve to the registered function. The local stack
dispatches by function name and would never notice a wrong one."""
from __future__ import annotations

import importlib

from app import app


def _resolve(handler_string: str):
    module, _, attribute = handler_string.rpartition(".")
    return getattr(importlib.import_module(module), attribute, None)


def test_every_lambda_handler_string_resolves_to_its_function():
    """Steps and the API key authorizer: the object at the handler string is Chalice's wrapper of the very function
    registered under that Lambda's name."""
    functions = app.pure_lambda_functions
    assert len(functions) >= 15  # the step Lambdas and the authorizer
    wrong = []
    for function in functions:
        found = _resolve(function.handler_string)
        original = getattr(getattr(found, "func", None), "_original_func", None)
        if original is not function.func:
            wrong.append(f"{function.name}: {function.handler_string}")
    assert not wrong, wrong
