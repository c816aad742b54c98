"""Step Lambdas: one thin module per pipeline step, each a Lambda per state-machine task.

Importing this package registers every handler, each on the Blueprint of its module (`step_blueprints()`).
"""
from chalicelib.steps import (  # noqa: F401  (imported for their registrations)
    ddl_generation,
    lifecycle,
    qa_generation,
    reconcile,
    sql_validation,
    training_load,
    vector_tables,
)
from chalicelib.steps.blueprint import in_step_sandbox, prime_step_sandbox, step_blueprints

if in_step_sandbox():  # Lambda's init phase (a step's handler module is imported then, this package first)
    prime_step_sandbox()

__all__ = ["step_blueprints"]
