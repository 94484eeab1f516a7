"""End to end on the embedded SmolLM2-135M (slow: loads the real model; CI runs it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app
from dps_cli.models.loading import load_model, resolve_model

RUNNER = CliRunner()
pytestmark = pytest.mark.slow


def bench() -> list[str]:
    """A few MATH500 questions when the data is at hand, else the built-in arith task."""
    data_dir = os.environ.get("DPS_DATA_DIR")
    if data_dir and (Path(data_dir) / "math500.json").exists():
        return ["--bench", "math500"]
    return ["--bench", "arith"]


def test_embedded_model_loads_offline() -> None:
    loaded = load_model("smollm2-135m", device="cpu")
    assert resolve_model("smollm2-135m").kind == "embedded"
    assert (loaded.num_layers, loaded.hidden_size) == (30, 576)
    assert len(loaded.tokenizer) >= 49152 and 2 in loaded.eos_token_ids
    assert loaded.tokenizer.chat_template


def test_sample_evaluate_passk_on_the_embedded_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = RUNNER.invoke(app, ["sample", *bench(), "--limit", "2", "--seeds", "0-1", "--k", "2",
                                 "--max-new-tokens", "24", "--blocks", "2", "--checkpoints", "1,2",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 4 samples" in result.stdout
    evaluated = RUNNER.invoke(app, ["evaluate", str(out), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    summary = json.loads(evaluated.stdout)["runs"][0]
    assert summary["questions"] == 2 and summary["samples"] == 4
    assert 0.0 <= summary["accuracy"] <= 1.0
    assert summary["mean_final_k"] == 2.0
    passk = RUNNER.invoke(app, ["passk", str(out), "--plot", str(tmp_path / "passk.png")])
    assert passk.exit_code == 0, passk.output
    assert (tmp_path / "passk.png").stat().st_size > 0
