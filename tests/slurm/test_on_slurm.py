"""The cluster path on a real single-node Slurm: arrays, cancellation, afterok chains, resume.

Every test submits real jobs with sbatch to the `slurm_cluster` fixture (skipped without Slurm)
and runs `dps` on the tiny random model of tests/conftest.py on the CPU.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app
from dps_cli.runs.store import RunStore
from tests.slurm.cluster import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RUNNER = CliRunner()
STABLE = ["question_id", "seed", "completion_ids", "completion", "k_schedule",
          "proposals_attempted", "proposals_accepted", "tokens_generated", "answer"]  # fmt: skip
#: Two array tasks share the 2-CPU node.
SMALL_TASK = ["--sbatch", "cpus-per-task=1", "--sbatch", "mem=2G"]


def sample_args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["--bench", "arith", "--model", str(model), "--method", "power", "--k", "2",
            "--max-new-tokens", "8", "--blocks", "2", "--checkpoints", "1", "--hidden-layer", "1",
            "--seeds", "0-1", "--limit", "4", "--batch-size", "4", "--device", "cpu",
            "--flush-every", "1", "--out", str(out), *extra]  # fmt: skip


def job_env() -> dict[str, str]:
    """Jobs inherit the submitter's environment: put this venv's `dps` on PATH."""
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def array_script(folder: Path, argv: list[str], tasks: int) -> Path:
    """`dps sample ARGV --slurm-array TASKS`, written to ``folder/array.sbatch``."""
    output = ["--sbatch", f"output={folder}/slurm-%A_%a.out"]
    result = RUNNER.invoke(app, ["sample", *argv, "--slurm-array", str(tasks), *SMALL_TASK, *output])
    assert result.exit_code == 0, result.output
    script = folder / "array.sbatch"
    script.write_text(result.stdout)
    return script


def stable_rows(out: Path) -> pl.DataFrame:
    return RunStore(out).read_samples().select(STABLE).sort("question_id", "seed")


def logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(folder.glob("*.out")))


def test_sample_array_of_two_tasks_equals_the_unsharded_run(
    slurm_cluster: Cluster, tiny_model_dir: Path, tmp_path: Path
) -> None:
    sharded = tmp_path / "sharded" / "run"
    script = array_script(tmp_path, sample_args(tiny_model_dir, sharded), tasks=2)
    job = slurm_cluster.sbatch(script, cwd=tmp_path, env=job_env())
    whole = tmp_path / "whole" / "run"
    assert RUNNER.invoke(app, ["sample", *sample_args(tiny_model_dir, whole)]).exit_code == 0
    slurm_cluster.wait([job], timeout_s=300)

    assert slurm_cluster.states(job) == {f"{job}_0": "COMPLETED", f"{job}_1": "COMPLETED"}, logs(tmp_path)
    frame = RunStore(sharded).read_samples()
    assert set(frame["shard"]) == {"0/2", "1/2"}  # both tasks wrote into the one run directory
    assert stable_rows(sharded).equals(stable_rows(whole))
    assert stable_rows(sharded).height == 8


def test_cancelled_task_resubmitted_completes_without_duplicates(
    slurm_cluster: Cluster, tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    # One chain at a time, each stored as it finishes: task 0 needs seconds for its 12 chains.
    argv = sample_args(tiny_model_dir, out, "--limit", "12", "--batch-size", "1",
                       "--max-new-tokens", "16", "--blocks", "4")  # fmt: skip
    script = array_script(tmp_path, argv, tasks=2)
    job = slurm_cluster.sbatch(script, cwd=tmp_path, env=job_env())
    task = f"{job}_0"
    deadline = time.monotonic() + 240
    while _rows_of_shard(out, "0/2") < 1:  # a sample of task 0 is stored: cancel the task
        assert time.monotonic() < deadline, logs(tmp_path)
        time.sleep(0.1)
    slurm_cluster.command("scancel", task)
    slurm_cluster.wait([job], timeout_s=300)
    assert slurm_cluster.states(job)[task] == "CANCELLED", logs(tmp_path)
    kept = _rows_of_shard(out, "0/2")
    assert 1 <= kept < 12, "the cancelled task should have stopped part-way"

    again = slurm_cluster.sbatch(script, cwd=tmp_path, env=job_env())  # the same array
    slurm_cluster.wait([again], timeout_s=300)
    assert set(slurm_cluster.states(again).values()) == {"COMPLETED"}, logs(tmp_path)
    frame = RunStore(out).read_samples()
    keys = frame.select("question_id", "seed")
    assert frame.height == 24 and keys.unique().height == 24  # none missing, none twice
    assert set(frame["question_id"]) == {f"arith-{i:04d}" for i in range(12)}


def _rows_of_shard(out: Path, shard: str) -> int:
    if not list((out / "samples").glob("part-*.parquet")):
        return 0
    return int((RunStore(out).read_samples()["shard"] == shard).sum())


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def assert_ran_in_order(cluster: Cluster, ids: dict[str, str], after: dict[str, list[str]]) -> None:
    """No job started before every job it waits for (``after``: name -> names) had ended."""
    ends = {name: max(_when(t["EndTime"]) for t in cluster.job_fields(job)) for name, job in ids.items()}
    ran = 0
    for name, job in ids.items():
        tasks = [t for t in cluster.job_fields(job) if t["JobState"] in ("COMPLETED", "FAILED")]
        for before in after.get(name, []):
            if before in ids and tasks:
                started = min(_when(t["StartTime"]) for t in tasks)
                assert started >= ends[before], f"{name} started before {before} ended"
                ran += 1
    assert ran, "no dependency was checked"


#: The stages each stage waits for (afterok), by job name.
TRAIN = ["train-k2", "train-k4", "train-k6", "train-k8"]
DPS = ["test-dps-gbdt", "test-dps-mlp-h", "test-dps-mlp-hq"]
AFTER = {"collect-train": TRAIN, **{name: ["collect-train"] for name in DPS},
         "report": ["test-k8", *DPS, "test-smc", "test-temperature"]}  # fmt: skip


def submitted(stderr: str) -> dict[str, str]:
    """Job name -> id, as `make reproduce SLURM=1` lists them."""
    return dict(re.findall(r"^(\S+): job (\d+) ", stderr, flags=re.MULTILINE))


def test_reproduce_on_slurm_stops_at_a_failed_stage_and_the_printed_resume_finishes(
    slurm_cluster: Cluster, tiny_model_dir: Path, tmp_path: Path
) -> None:
    out, reports = tmp_path / "runs", tmp_path / "reports"
    (out / "train-table.parquet").mkdir(parents=True)  # collect-train cannot write its table
    argv = ["--task", "arith", "--profile", "smoke", "--model", str(tiny_model_dir),
            "--out-dir", str(out), "--reports-dir", str(reports), "--device", "cpu", "--slurm"]  # fmt: skip
    result = RUNNER.invoke(app, ["reproduce", *argv])
    assert result.exit_code == 0, result.output
    ids = submitted(result.stderr)
    assert list(ids) == [*TRAIN, "collect-train", "test-k8", *DPS, "test-smc", "test-temperature", "report"]
    slurm_cluster.wait(list(ids.values()), timeout_s=600)

    folder = out / "slurm"
    states = {name: set(slurm_cluster.states(job).values()) for name, job in ids.items()}
    assert states["collect-train"] == {"FAILED"}, logs(folder)
    for name in [*TRAIN, "test-k8", "test-smc", "test-temperature"]:
        assert states[name] == {"COMPLETED"}, (name, logs(folder))
    for name in [*DPS, "report"]:
        assert states[name] == {"CANCELLED"}, (name, states)  # their dependency failed
        assert all(t["StartTime"] in ("Unknown", "None") or t["RunTime"] == "00:00:00"
                   for t in slurm_cluster.job_fields(ids[name])), name  # fmt: skip
    assert_ran_in_order(slurm_cluster, ids, AFTER)
    assert not (out / "test-dps-gbdt").exists() and not (reports / "reproduce.md").exists()
    failed_log = next(folder.glob("collect-train-*.out")).read_text()
    assert "dps: this job failed; once the queue holds none of its jobs, resume" in failed_log

    (out / "train-table.parquet").rmdir()  # the user fixes the cause, then runs what dps printed
    resume = result.stdout.strip().splitlines()[-1]
    assert resume.startswith(sys.executable) and " --slurm " in resume
    resumed = subprocess.run(shlex.split(resume), check=True, capture_output=True, text=True,
                             cwd=tmp_path)  # fmt: skip
    again = submitted(resumed.stderr)
    assert list(again) == ["collect-train", *DPS, "report"]  # complete runs are not resubmitted
    slurm_cluster.wait(list(again.values()), timeout_s=600)

    for name, job in again.items():
        assert set(slurm_cluster.states(job).values()) == {"COMPLETED"}, (name, logs(folder))
    assert_ran_in_order(slurm_cluster, again, AFTER)
    assert (reports / "reproduce.md").is_file()
    for name in [*TRAIN, "test-k8", *DPS, "test-smc", "test-temperature"]:
        frame = RunStore(out / name).read_samples()
        expected = 3 if name in TRAIN else 2
        assert frame.height == expected and frame.select("question_id", "seed").unique().height == expected
    assert RunStore(out / "test-dps-gbdt").read_samples()["tau"].is_not_null().all()
