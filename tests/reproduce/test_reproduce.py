"""`make reproduce` end to end on a tiny random model: every artifact, resume, and Slurm wiring.

The tiny model cannot do arithmetic, so a planted grader marks a completion correct by a hash
of its text: answers then differ across k and seeds, which is all the controllers need to have
two classes to learn. Everything else (sampling, collect, training, DPS, evaluation, report)
is the real code path.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app
from dps_cli.errors import UserError
from dps_cli.pipeline import grading
from dps_cli.pipeline.sample import SampleProgress
from dps_cli.reproduce.profiles import CPU, Profile
from dps_cli.reproduce.runs import ReproduceOptions
from dps_cli.reproduce.stages import reproduce
from dps_cli.runs.store import RunStore
from dps_cli.tasks import get_task
from dps_cli.tasks.base import Grade, Question

TRAIN_RUNS = ("train-k2", "train-k4", "train-k6", "train-k8")
TEST_RUNS = ("test-k8", "test-dps-gbdt", "test-dps-mlp-h", "test-dps-mlp-hq", "test-smc", "test-temperature")
CONTROLLERS = ("arith-gbdt", "arith-mlp-h", "arith-mlp-hq")
METHODS = ("Fixed k=8", "DPS-GBDT", "DPS-MLP-H", "DPS-MLP-HQ", "Power-SMC N=11", "Temperature 1/alpha = 0.25")


def tiny_profile(model: Path) -> Profile:
    """6 training and 4 held-out questions x 2 seeds, 16 tokens in 4 blocks, quick training."""
    return replace(
        CPU, name="tiny", model=str(model), max_new_tokens=16, blocks=4, checkpoints=(1, 2, 3),
        hidden_layer=1, seeds=(0, 1), train_questions=6, test_questions=4, batch_size=16,
        gbdt_iterations=30, mlp_epochs=5, train_threads=1, vote_seeds=(),
    )  # fmt: skip


class HashGradedArith:
    """The arith task, graded by a hash of the completion (about half correct, deterministic)."""

    def __init__(self) -> None:
        self.inner = get_task("arith")
        self.name = self.inner.name

    def __getattr__(self, attribute: str) -> object:
        return getattr(self.inner, attribute)

    def grade_many(
        self,
        items: Sequence[tuple[Question, str, tuple[int, ...] | None]],
        workers: int | None = None,
        unsafe_sandbox: bool = False,
    ) -> list[Grade]:
        return [
            Grade(answer=None, correct=_coin(question.id + completion))
            for question, completion, _ in items
        ]


def _coin(text: str) -> bool:
    return hashlib.sha256(text.encode()).digest()[0] % 2 == 0


@pytest.fixture()
def planted_grader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grading, "resolve_task", lambda name: HashGradedArith())


@pytest.fixture()
def options(tmp_path: Path, tiny_model_dir: Path) -> ReproduceOptions:
    return ReproduceOptions(
        task="arith", profile=tiny_profile(tiny_model_dir), out_dir=tmp_path / "runs",
        reports_dir=tmp_path / "reports", device="cpu",
    )  # fmt: skip


class InterruptAfter:
    """A progress factory that raises KeyboardInterrupt once ``chains`` chains have finished."""

    def __init__(self, chains: int) -> None:
        self.chains = chains

    def __call__(self, _: str):  # type: ignore[no-untyped-def]
        from contextlib import nullcontext

        def callback(state: SampleProgress) -> None:
            if state.done - state.skipped >= self.chains:
                raise KeyboardInterrupt

        return nullcontext(callback)


@pytest.mark.slow
@pytest.mark.usefixtures("planted_grader")
def test_reproduce_end_to_end_resumes_and_reports(
    options: ReproduceOptions,
) -> None:
    out = options.out
    # An interruption in the middle of the first training run keeps the chains it finished.
    with pytest.raises(KeyboardInterrupt):
        reproduce(options, progress=InterruptAfter(3))
    partial = len(RunStore(out / "train-k2").completed_keys())
    assert 3 <= partial < 12

    first = reproduce(options)
    assert first.written["train-k2"] == 12 - partial
    assert {first.written[name] for name in TRAIN_RUNS[1:]} == {12}
    assert {first.written[name] for name in TEST_RUNS} == {8}
    assert first.collected and first.trained == list(CONTROLLERS)

    for name, pairs in [(n, 12) for n in TRAIN_RUNS] + [(n, 8) for n in TEST_RUNS]:
        store = RunStore.open_existing(out / name)
        samples = store.read_samples()
        assert samples.height == pairs and set(samples["seed"]) == {0, 1}
        assert (out / name / "grades.parquet").is_file() or name.startswith("train")
    held_out = RunStore(out / "test-k8").read_samples()["question_id"].unique().sort().to_list()
    assert held_out == [f"arith-{i:04d}" for i in range(6, 10)]
    dps = RunStore(out / "test-dps-mlp-hq").read_samples()
    assert set(dps["method"]) == {"dps"} and set(dps["controller"]) == {"arith-mlp-hq"}
    assert set(RunStore(out / "test-temperature").read_samples()["method"]) == {"temperature"}
    smc = RunStore(out / "test-smc").read_samples()  # N = 1 + 8 x (4 + 1) / 4 = 11 particles
    assert set(smc["method"]) == {"smc"} and {len(w) for w in smc["particle_log_weights"]} == {11}

    table = pl.read_parquet(out / "train-table.parquet")
    assert set(table["k"]) == {2, 4, 6, 8}
    assert table.select("question_id", "seed", "k").unique().height == 6 * 2 * 4
    assert (
        table["question_id"].n_unique() == 6 and table.height <= 6 * 2 * 4 * 3
    )  # EOS may end early
    for name, kind in zip(CONTROLLERS, ("gbdt", "mlp-h", "mlp-hq"), strict=True):
        card = json.loads((out / "controllers" / name / "card.json").read_text())
        assert card["kind"] == kind and card["task"] == "arith"
        assert 0 < card["recommended_tau"] < 1

    report = (options.reports_dir / "reproduce.md").read_text()
    assert (
        str(options.profile.model) in report and "`arith`" in report and "Profile: `tiny`" in report
    )
    assert "6 for training" in report and "4 held out" in report
    assert "not from the paper's setting" in report
    assert "| Method | Accuracy (%) | 95% CI | Time (s / question) | tokens / question | mean k |" in report
    for method in METHODS:
        assert f"| {method} |" in report or f"| {method} † |" in report
    for row in ("Majority vote @ matched tokens", "Best-of-N @ matched tokens"):
        assert f"| {row} |" in report
    assert "Matched tokens: N = " in report and "## Controllers' evidence" in report
    assert "Power-SMC N=11: the accuracy is that of the particle drawn" in report
    assert (options.reports_dir / "accuracy_tokens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "DPS-GBDT" in report and "| 68.7 | 73.2 |" in report and "| 69.7 | 263.2 |" in report
    assert "![pass@k](passk.png)" in report and "![tau sweep](tau_sweep.png)" in report
    assert "### arith-mlp-hq (mlp-hq), recommended tau" in report
    for png in ("passk.png", "tau_sweep.png"):
        assert (options.reports_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == {"sample-train", "collect-train", "sample-test", "report"}

    # A second run after completion recomputes nothing; the CLI prints the paper-style table.
    table_mtime = (out / "train-table.parquet").stat().st_mtime_ns
    again = reproduce(options)
    assert sum(again.written.values()) == 0
    assert again.trained == [] and again.reused == list(CONTROLLERS) and not again.collected
    assert (out / "train-table.parquet").stat().st_mtime_ns == table_mtime
    assert json.loads((out / "timings.json").read_text())["sample-train"] == timings["sample-train"]

    result = CliRunner().invoke(app, ["reproduce", *_cli_args(options, "report")])
    printed = result.stdout
    assert result.exit_code == 0, result.output
    for heading in ("Method", "Accuracy (%)", "Time (s / question)", "mean k", "Paper accuracy"):
        assert heading in printed
    for method in METHODS[:4]:
        assert method in printed
    assert "not from the paper's setting" in printed
    as_json = CliRunner().invoke(app, ["reproduce", *_cli_args(options, "report"), "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert [row["method"] for row in json.loads(as_json.stdout)["rows"]][: len(METHODS)] == list(METHODS)


def _cli_args(options: ReproduceOptions, stage: str) -> list[str]:
    return [
        "--task", options.task, "--profile", "cpu", "--model", options.model_id,
        "--out-dir", str(options.out), "--reports-dir", str(options.reports_dir),
        "--device", "cpu", "--stage", stage,
    ]  # fmt: skip


FAKE_SBATCH = """#!/bin/sh
n=$(($(cat "$LOG_DIR/count" 2>/dev/null || echo 100) + 1))
echo "$n" > "$LOG_DIR/count"
echo "$*" >> "$LOG_DIR/calls"
echo "$n"
"""


def test_slurm_submission_order_and_scripts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: ReproduceOptions
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(FAKE_SBATCH)
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LOG_DIR", str(tmp_path))
    from dps_cli.reproduce.slurm import submit_reproduction

    profile = replace(options.profile, slurm_shards=3, seeds=(0, 1))
    jobs = submit_reproduction(replace(options, profile=profile))

    names = [job.name for job in jobs]
    assert names == [*TRAIN_RUNS, "collect-train", *TEST_RUNS, "report"]
    ids = {job.name: job.job_id for job in jobs}
    assert [job.job_id for job in jobs] == [str(i) for i in range(101, 113)]
    assert jobs[4].after == tuple(ids[name] for name in TRAIN_RUNS)
    after = {job.name: job.after for job in jobs}
    assert after["test-k8"] == after["test-smc"] == after["test-temperature"] == ()
    assert after["test-dps-gbdt"] == after["test-dps-mlp-hq"] == (ids["collect-train"],)
    assert after["report"] == tuple(ids[name] for name in TEST_RUNS)

    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[4].startswith("--parsable --dependency=afterok:101:102:103:104 ")
    assert calls[0].startswith("--parsable ") and "--dependency" not in calls[0]

    script = jobs[1].script.read_text()
    assert "#SBATCH --array=0-5" in script  # 3 shards x 2 seeds
    assert "--seeds 0-1" in script and script.endswith('--shard "${SLURM_ARRAY_TASK_ID}/6"\n')
    assert " -m dps_cli sample --bench arith " in script and " --k 4 " in script
    assert f"--out {options.out.resolve() / 'train-k4'}" in script
    dps_script = next(job for job in jobs if job.name == "test-dps-mlp-h").script.read_text()
    assert "--method dps" in dps_script and "--controller arith-mlp-h" in dps_script
    assert "--tau" not in dps_script and "--offset 6 --out" in dps_script
    smc_script = next(job for job in jobs if job.name == "test-smc").script.read_text()
    assert "--method smc" in smc_script and "--particles 11 " in smc_script
    report_script = jobs[-1].script.read_text()
    assert "-m dps_cli reproduce --stage report" in report_script
    assert "#SBATCH --array" not in report_script and "gres" not in report_script


def test_slurm_needs_sbatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: ReproduceOptions
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    from dps_cli.reproduce.slurm import submit_reproduction

    with pytest.raises(UserError, match="sbatch is not on PATH"):
        submit_reproduction(options)


def test_profile_larger_than_task_is_refused(options: ReproduceOptions) -> None:
    profile = replace(options.profile, train_questions=150, test_questions=100)
    with pytest.raises(UserError, match="needs 250 questions but task 'arith' has 200"):
        reproduce(replace(options, profile=profile), stages=("sample-train",))


def test_cli_reports_user_errors(tmp_path: Path) -> None:
    argv = ["reproduce", "--profile", "cpu", "--stage", "report", "--out-dir", str(tmp_path / "none")]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and "No run at" in result.stderr


def test_cli_refuses_slurm_with_one_stage(tmp_path: Path) -> None:
    argv = ["reproduce", "--slurm", "--stage", "report", "--out-dir", str(tmp_path)]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and "cannot be combined with --stage" in result.stderr


def test_slurm_resources_come_from_the_profile_and_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: ReproduceOptions
) -> None:
    from dps_cli.reproduce.profiles import PAPER
    from dps_cli.reproduce.slurm import resume_command, submit_reproduction

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LOG_DIR", str(tmp_path))
    cpu = submit_reproduction(replace(options, sbatch={"partition": "small", "mem": "1G"}))
    script = cpu[0].script.read_text()
    assert "gres" not in script and "#SBATCH --cpus-per-task=2" in script  # the CPU profile's
    assert "#SBATCH --partition=small" in script and "#SBATCH --mem=1G" in script
    gpu = submit_reproduction(replace(options, profile=replace(options.profile, sbatch=PAPER.sbatch)))
    assert "#SBATCH --gres=gpu:1" in gpu[0].script.read_text()
    assert "gres" not in gpu[4].script.read_text()  # collect and training need no GPU
    resume = resume_command(replace(options, sbatch={"partition": "small"}))
    assert " --slurm " in resume and "--sbatch partition=small" in resume
    assert f"--out-dir {options.out.resolve()}" in resume
