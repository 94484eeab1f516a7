"""Offline AlpacaEval judging through the engine, on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dps_cli.pipeline.evaluate import evaluate_runs
from dps_cli.pipeline.judge import _win_probability, judge_run, verdict_token_ids
from dps_cli.runs.store import RunStore
from dps_cli.sampling.requests import PrefillResult
from dps_cli.tasks.loading import text_id
from tests.factories import run_config, sample_row, write_run

INSTRUCTIONS = ["Name a colour.", "Say hello.", "Count to three."]


@pytest.fixture()
def alpaca_run(tmp_path: Path) -> Path:
    data = tmp_path / "alpaca.json"
    data.write_text(json.dumps([{"instruction": text, "output": f"Reference for {text}",
                                 "generator": "ref", "dataset": "toy"} for text in INSTRUCTIONS]))
    rows = [sample_row(task="alpacaeval", question_id=text_id("alpacaeval", text), seed=0,
                       completion=f"My answer to {text}") for text in INSTRUCTIONS]
    return write_run(tmp_path / "alpaca-run", rows, config=run_config("alpacaeval", data=str(data)),
                     task="alpacaeval")


def test_win_probability_averages_the_two_letters() -> None:
    result = PrefillResult(sequence=None, prompt_hidden_mean=None,  # type: ignore[arg-type]
                           next_token_logp=np.log(np.array([0.3, 0.1], dtype=np.float32)))
    assert _win_probability(result, 0) == pytest.approx(0.75)
    assert _win_probability(result, 1) == pytest.approx(0.25)


def test_judge_run_scores_every_instruction(alpaca_run: Path, tiny_model_dir: Path) -> None:
    result = judge_run(RunStore(alpaca_run), str(tiny_model_dir))
    assert result.items == 3
    assert 0.0 <= result.win_rate_lo <= result.win_rate <= result.win_rate_hi <= 100.0
    again = judge_run(RunStore(alpaca_run), str(tiny_model_dir))
    assert again.win_rate == pytest.approx(result.win_rate)  # deterministic: no sampling


def test_evaluate_with_judge_reports_local_win_rate(alpaca_run: Path, tiny_model_dir: Path) -> None:
    report = evaluate_runs([alpaca_run], judge=str(tiny_model_dir))
    local = report.runs[0].alpaca.local_judge  # type: ignore[union-attr]
    assert local is not None and local.items == 3


def test_verdict_tokens_differ(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    a, b = verdict_token_ids(AutoTokenizer.from_pretrained(tiny_model_dir))
    assert a != b
