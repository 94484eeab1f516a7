"""`dps sample` wiring: bad input gets one sentence on stderr and exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app

RUNNER = CliRunner()


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return RUNNER.invoke(app, ["sample", *args], env={"COLUMNS": "200"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bench", "math5000"], "Unknown task 'math5000'. Did you mean 'math500'?"),
        (["--bench", "arith", "--max-new-tokens", "100", "--blocks", "16"],
         "--max-new-tokens 100 must be divisible by --blocks 16."),
        (["--bench", "arith", "--k", "0"], "--k 0 must be at least 1."),
        (["--bench", "arith", "--alpha", "1"], "--alpha 1.0 must be greater than 1"),
        (["--bench", "arith", "--method", "beam"], "Unknown method 'beam'."),
        (["--bench", "arith", "--method", "dps"], "--method dps needs --controller NAME."),
        (["--bench", "arith", "--seeds", "3-1"], "--seeds range '3-1' is empty."),
        (["--bench", "arith", "--shard", "2/2"], "--shard 2/2 is invalid."),
        (["--bench", "arith", "--model", "./no/such/model"], "Model path ./no/such/model does not exist."),
        (["--bench", "arith", "--model", "missing.gguf"], "GGUF file missing.gguf does not exist."),
        (["--bench", "arith", "--hidden-layer", "eleven"], "--hidden-layer 'eleven' must be a layer number"),
        (["--bench", "arith", "--after-eos", "restart"], "Unknown --after-eos 'restart'."),
    ],
)
def test_bad_input_exits_2_with_one_sentence(args: list[str], message: str, tmp_path: Path) -> None:
    result = invoke(*args, "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_unreadable_data_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    result = invoke("--bench", "math500", "--data", str(bad), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert "broken.json" in result.stderr


def test_foreign_run_directory_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    common = ["--bench", "arith", "--model", str(tiny_model_dir), "--method", "greedy", "--limit", "1", "--hidden-layer", "none",
              "--out", out]
    assert invoke(*common, "--max-new-tokens", "8").exit_code == 0
    result = invoke(*common, "--max-new-tokens", "16")
    assert result.exit_code == 2
    assert "holds a different run (differs in: max_new_tokens)" in result.stderr


def test_sample_writes_a_run_and_reports_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke("--bench", "arith", "--model", str(tiny_model_dir), "--k", "2", "--max-new-tokens", "8",
                    "--blocks", "2", "--limit", "2", "--seeds", "0-1", "--out", str(out), "--hidden-layer", "1")
    assert result.exit_code == 0, result.output
    assert f"{out}: wrote 4 samples, 0 already stored" in result.stdout
    assert list((out / "samples").glob("part-*.parquet"))


def test_slurm_array_prints_the_sbatch_script(tmp_path: Path) -> None:
    result = invoke("--bench", "math500", "--seeds", "0-7", "--slurm-array", "4", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "#SBATCH --array=0-3" in result.stdout
    assert '--shard "${SLURM_ARRAY_TASK_ID}/4"' in result.stdout
    assert "--slurm-array" not in result.stdout.split("#SBATCH --output")[1]
