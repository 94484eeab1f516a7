"""`dps_cli.pipeline.sample`: rows, resume after interruption, sharding and selection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from dps_cli.config import SampleConfig, parse_seeds, parse_shard
from dps_cli.errors import UserError
from dps_cli.pipeline.sample import sample
from dps_cli.runs.schema import SAMPLE_SCHEMA
from dps_cli.runs.store import RunStore

STABLE = ["question_id", "seed", "completion_ids", "completion", "k_schedule", "proposals_attempted",
          "proposals_accepted", "tokens_generated", "answer", "question_embedding"]


def config(model: Path, out: Path, **overrides) -> SampleConfig:  # type: ignore[no-untyped-def]
    settings = dict(bench="arith", out=out, model=str(model), method="power", k=2, max_new_tokens=16,
                    blocks=4, checkpoints=(1, 2), hidden_layer=1, seeds=(0, 1), limit=3, batch_size=4,
                    flush_every=1)
    settings.update(overrides)
    return SampleConfig(**settings)  # type: ignore[arg-type]


def stable_rows(out: Path) -> pl.DataFrame:
    return RunStore(out).read_samples().select(STABLE).sort("question_id", "seed")


def test_rows_follow_the_schema_and_the_config(tiny_model_dir: Path, tmp_path: Path) -> None:
    summary = sample(config(tiny_model_dir, tmp_path / "run"))
    assert (summary.written, summary.skipped, summary.total) == (6, 0, 6)
    frame = RunStore(tmp_path / "run").read_samples()
    assert frame.columns == SAMPLE_SCHEMA.names
    assert sorted(frame["question_id"].unique().to_list()) == ["arith-0000", "arith-0001", "arith-0002"]
    row = frame.row(0, named=True)
    assert row["method"] == "power" and row["alpha"] == 4.0 and row["temperature"] == 0.25
    assert row["k_schedule"] == [2] * len(row["k_schedule"]) and row["final_k"] == 2
    assert row["proposals_attempted"] == 2 * len(row["k_schedule"])
    assert len(row["question_embedding"]) == 16
    assert [c["block"] for c in row["checkpoints"]] == [b for b in (1, 2) if b <= len(row["k_schedule"])]
    assert row["prompt"].endswith("<|im_start|>assistant\n")
    manifest = RunStore(tmp_path / "run").read_manifest()
    assert manifest["config"]["k"] == 2 and manifest["model"]["hidden_size"] == 16
    assert manifest["versions"]["dps"]


def test_rerun_skips_stored_pairs_and_extends_seeds(tiny_model_dir: Path, tmp_path: Path) -> None:
    sample(config(tiny_model_dir, tmp_path / "run"))
    again = sample(config(tiny_model_dir, tmp_path / "run"))
    assert (again.written, again.skipped) == (0, 6)
    more = sample(config(tiny_model_dir, tmp_path / "run", seeds=(0, 1, 2)))
    assert (more.written, more.skipped) == (3, 6)
    frame = RunStore(tmp_path / "run").read_samples()
    assert frame.height == 9 and frame.select("question_id", "seed").is_duplicated().sum() == 0


def test_resume_after_interruption_gives_the_same_rows(tiny_model_dir: Path, tmp_path: Path) -> None:
    sample(config(tiny_model_dir, tmp_path / "whole"))

    def interrupt_after_two(state) -> None:  # type: ignore[no-untyped-def]
        if state.done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sample(config(tiny_model_dir, tmp_path / "cut"), interrupt_after_two)
    assert 2 <= RunStore(tmp_path / "cut").read_samples().height < 6
    sample(config(tiny_model_dir, tmp_path / "cut"))
    assert stable_rows(tmp_path / "cut").equals(stable_rows(tmp_path / "whole"))


def test_kill_9_leaves_only_complete_parts_and_resumes(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "dps_cli", "sample", "--bench", "arith", "--model", str(tiny_model_dir),
           "--k", "4", "--max-new-tokens", "32", "--blocks", "4", "--limit", "12", "--seeds", "0-1",
           "--batch-size", "2", "--hidden-layer", "none", "--flush-every", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "samples").glob("part-*.parquet")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = RunStore(out).read_samples().height  # every part on disk reads back whole
    assert 1 <= written < 24
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    frame = RunStore(out).read_samples()
    assert frame.height == 24 and frame.select("question_id", "seed").is_duplicated().sum() == 0


def test_shard_and_limit_select_questions(tiny_model_dir: Path, tmp_path: Path) -> None:
    sample(config(tiny_model_dir, tmp_path / "run", method="greedy", limit=5, shard=(1, 2), seeds=(0,)))
    ids = sorted(RunStore(tmp_path / "run").read_samples()["question_id"].to_list())
    assert ids == ["arith-0001", "arith-0003"]
    sample(config(tiny_model_dir, tmp_path / "off", method="greedy", offset=5, limit=2, seeds=(0,)))
    assert sorted(RunStore(tmp_path / "off").read_samples()["question_id"].to_list()) == ["arith-0005", "arith-0006"]


def test_different_run_in_output_directory_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    sample(config(tiny_model_dir, tmp_path / "run", method="greedy", seeds=(0,)))
    with pytest.raises(UserError, match="holds a different run"):
        sample(config(tiny_model_dir, tmp_path / "run", method="greedy", max_new_tokens=8, seeds=(0,)))


def test_temperature_and_greedy_rows(tiny_model_dir: Path, tmp_path: Path) -> None:
    sample(config(tiny_model_dir, tmp_path / "t", method="temperature", temperature=0.5, seeds=(0,)))
    row = RunStore(tmp_path / "t").read_samples().row(0, named=True)
    assert row["method"] == "temperature" and row["temperature"] == 0.5 and row["alpha"] is None
    assert row["proposals_attempted"] == 0 and row["k_schedule"] == [] and row["checkpoints"] == []


@pytest.mark.parametrize(
    ("text", "expected"), [("0-3", (0, 1, 2, 3)), ("0,2,5", (0, 2, 5)), ("4", (4,)), ("1-2,2-3", (1, 2, 3))]
)
def test_parse_seeds(text: str, expected: tuple[int, ...]) -> None:
    assert parse_seeds(text) == expected


def test_parse_shard_reads_slurm_array_variables() -> None:
    env = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert parse_shard(None, env) == (2, 4)
    assert parse_shard("1/3", env) == (1, 3)
    assert parse_shard(None, {}) == (0, 1)
    with pytest.raises(UserError, match="not of the form i/n"):
        parse_shard("3", {})
