"""The task registry: names, instantiation, and the "did you mean" error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dps_cli.errors import UserError
from dps_cli.tasks import TASKS, get_task


def test_registry_lists_every_benchmark() -> None:
    assert TASKS.names() == ["alpacaeval", "arith", "gpqa", "humaneval", "math500"]


@pytest.mark.parametrize("name", ["alpacaeval", "arith", "gpqa", "humaneval", "math500"])
def test_get_task_builds_an_instance_named_like_its_key(name: str) -> None:
    task = get_task(name)
    assert task.name == name
    assert isinstance(task.prefers_raw_prompt, bool)


def test_only_humaneval_prefers_raw_prompt() -> None:
    raw = [name for name in TASKS.names() if get_task(name).prefers_raw_prompt]
    assert raw == ["humaneval"]


def test_unknown_task_suggests_the_closest_name() -> None:
    with pytest.raises(UserError) as info:
        get_task("math50")
    assert info.value.message == "Unknown task 'math50'."
    assert info.value.hint is not None
    assert info.value.hint.startswith("Did you mean 'math500'?")
    assert "alpacaeval, arith, gpqa, humaneval, math500" in info.value.hint


def test_importing_the_registry_stays_light() -> None:
    code = (
        "import sys, dps_cli.tasks; "
        "heavy = [m for m in ('torch', 'datasets', 'transformers', 'polars', 'math_verify') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
