"""The task registry: benchmark name -> task class, imported only when asked for.

``TASKS.names()`` lists the benchmarks; `get_task` builds one. This module imports nothing
heavy so that ``dps --help`` stays instant.
"""

from __future__ import annotations

from dps_cli.registry import Registry
from dps_cli.tasks.base import Grade, Question, Task

TASKS: Registry[type[Task]] = Registry(
    "task",
    {
        "math500": "dps_cli.tasks.math500:Math500Task",
        "gpqa": "dps_cli.tasks.gpqa:GpqaTask",
        "humaneval": "dps_cli.tasks.humaneval:HumanEvalTask",
        "alpacaeval": "dps_cli.tasks.alpacaeval:AlpacaEvalTask",
        "arith": "dps_cli.tasks.arith:ArithTask",
    },
)


def get_task(name: str) -> Task:
    """A fresh instance of the task registered as ``name`` (`UserError` if unknown)."""
    return TASKS.get(name)()


__all__ = ["TASKS", "Grade", "Question", "Task", "get_task"]
