"""`dps sample` under SIGTERM, SIGINT, SIGKILL, a corrupt part and a second writer.

The interrupted runs are real `dps sample` processes on a tiny random model; a driver script
replaces the progress bar by one "done N" line per update, so the test knows when samples have
finished (and how many had finished when the process stopped). Every interrupted run is then
resumed and must hold exactly the rows of an uninterrupted run.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app
from dps_cli.config import SampleConfig
from dps_cli.pipeline.sample import sample
from dps_cli.runs.locks import acquire_writer
from dps_cli.runs.store import RunStore

DRIVER = """
import sys
from contextlib import contextmanager

import dps_cli.cli.progress as progress


@contextmanager
def sample_progress():
    def update(state):
        print(f"done {state.done}", flush=True)
    yield update


progress.sample_progress = sample_progress
from dps_cli.cli.app import app

app(sys.argv[1:], prog_name="dps")
"""
KEY = ["question_id", "seed", "completion_ids"]


def settings(model: Path, out: Path) -> list[str]:
    return ["--bench", "arith", "--model", str(model), "--k", "2", "--max-new-tokens", "16", "--blocks", "4",
            "--limit", "4", "--seeds", "0-1", "--batch-size", "2", "--hidden-layer", "none", "--out", str(out)]


def config(model: Path, out: Path) -> SampleConfig:
    """The same run as `settings`, for resuming in-process."""
    return SampleConfig(bench="arith", out=out, model=str(model), k=2, max_new_tokens=16, blocks=4, limit=4,
                        seeds=(0, 1), batch_size=2, hidden_layer=None)


def rows(out: Path) -> pl.DataFrame:
    return RunStore(out).read_samples().select(KEY).sort("question_id", "seed")


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    out = tmp_path_factory.mktemp("whole") / "run"
    sample(config(tiny_model_dir, out))
    frame = rows(out)
    assert frame.height == 8
    return frame


def interrupt(model: Path, out: Path, signum: int, after: int = 2) -> tuple[int, str, int, int]:
    """Start `dps sample`, send ``signum`` once ``after`` samples are done.

    Returns (exit code, stderr, samples done when it stopped, rows stored before the signal).
    """
    driver = out.parent / "driver.py"
    driver.write_text(DRIVER)
    command = [sys.executable, str(driver), "sample", *settings(model, out), "--flush-every", "100"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    done = 0
    for line in proc.stdout:
        done = int(line.split()[1])
        if done >= after:
            break
    stored_before = RunStore(out).read_samples().height if list(out.glob("samples/part-*.parquet")) else 0
    os.kill(proc.pid, signum)
    for line in proc.stdout:  # updates printed before the signal arrived
        done = int(line.split()[1])
    _, stderr = proc.communicate(timeout=120)
    assert 1 <= done < 8, "the run must stop part-way for this test to mean anything"
    return proc.returncode, stderr, done, stored_before


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_keeps_every_finished_sample(
    tiny_model_dir: Path, tmp_path: Path, uninterrupted: pl.DataFrame, signum: int, code: int
) -> None:
    out = tmp_path / "run"
    returncode, stderr, done, stored_before = interrupt(tiny_model_dir, out, signum)
    name = signal.Signals(signum).name
    assert returncode == code
    assert stderr.strip().splitlines() == [
        f"Stopped by {name}: the {done} samples finished in this session are stored in {out}; "
        "rerun the same command to resume."
    ]
    assert stored_before < done  # finished samples were waiting in the buffer ...
    assert RunStore(out).read_samples().height == done  # ... and none of them was lost
    assert not list(out.glob("samples/.part-*.tmp"))
    sample(config(tiny_model_dir, out))
    assert rows(out).equals(uninterrupted)


def test_a_rerun_after_sigkill_gives_the_rows_of_an_uninterrupted_run(
    tiny_model_dir: Path, tmp_path: Path, uninterrupted: pl.DataFrame
) -> None:
    out = tmp_path / "run"
    returncode, _, _, _ = interrupt(tiny_model_dir, out, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    (out / "samples" / ".part-00042-deadbeef.parquet.s0of1.0badcafe.tmp").write_bytes(b"")  # a killed write
    sample(config(tiny_model_dir, out))
    assert rows(out).equals(uninterrupted)
    assert not list(out.glob("samples/.part-*.tmp"))


def test_a_rerun_redraws_the_samples_of_a_corrupt_part(
    tiny_model_dir: Path, tmp_path: Path, uninterrupted: pl.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.runs.test_locking import _damage_a_data_page

    out = tmp_path / "run"
    sample(replace(config(tiny_model_dir, out), flush_every=4))
    parts = sorted(out.glob("samples/part-*.parquet"))
    assert len(parts) >= 2  # every 4 samples, or sooner on a slow machine
    lost = pq.ParquetFile(parts[1]).metadata.num_rows
    _damage_a_data_page(parts[1])
    with caplog.at_level(logging.WARNING):
        summary = sample(config(tiny_model_dir, out))
    assert summary.written == lost and summary.skipped == 8 - lost
    assert any("Moved it aside" in r.getMessage() for r in caplog.records)
    assert (parts[1].parent / f"{parts[1].name}.corrupt").is_file()
    assert rows(out).equals(uninterrupted)


def test_a_second_writer_of_the_same_shard_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = acquire_writer(out, (0, 1), "dps sample (the first writer)")
    try:
        result = CliRunner().invoke(app, ["sample", *settings(tiny_model_dir, out)])
    finally:
        first.release()
    assert result.exit_code == 2, result.output
    assert f"Another dps sample is already writing shard 0/1 of {out} (pid {os.getpid()}" in result.stderr
    assert "Traceback" not in result.output
    assert not list(out.glob("samples/part-*.parquet"))
