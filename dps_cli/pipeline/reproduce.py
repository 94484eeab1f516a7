"""`make reproduce`: the DPS paper's pipeline end to end, stage by stage, resumable.

    python -m dps_cli.pipeline.reproduce --task arith --profile cpu

Stages (``--stage`` runs one; the default runs all four in order):

1. ``sample-train`` — fixed-k power sampling at k = 2, 4, 6, 8 on the training questions;
2. ``collect-train`` — `collect` the training table, then train gbdt, mlp-h and mlp-hq;
3. ``sample-test`` — on the held-out questions: fixed k=8, DPS with each controller at its
   recommended tau, and plain sampling at temperature 1/alpha;
4. ``report`` — `evaluate_runs`, `passk_table`, the paper-style table and reports/reproduce.md.

Every stage is idempotent. Sampling skips stored (question, seed) pairs by itself; collect is
skipped while the table is newer than every training sample; a controller is retrained only
when the reproduce registry lacks it or its card names another training table (SHA-256), and
then the DPS run that used the old one is removed. So an interrupted reproduction, run again,
finishes without recomputing finished work. ``--slurm`` submits the same stages as Slurm jobs
(`dps_cli.pipeline.reproduce_slurm`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dps_cli.config import SampleConfig
from dps_cli.errors import UserError
from dps_cli.pipeline.profiles import CONTROLLER_KINDS, Profile
from dps_cli.pipeline.sample import ProgressCallback, SampleProgress
from dps_cli.runs.atomic import atomic_write_json

if TYPE_CHECKING:
    from dps_cli.report.reproduce import ReproduceReport

logger = logging.getLogger(__name__)

STAGES = ("sample-train", "collect-train", "sample-test", "report")
TABLE_NAME = "train-table.parquet"
TIMINGS_NAME = "timings.json"
METHOD_NAMES = {"gbdt": "DPS-GBDT", "mlp-h": "DPS-MLP-H", "mlp-hq": "DPS-MLP-HQ"}

ProgressFactory = Callable[[str], AbstractContextManager[ProgressCallback | None]]


@dataclass(frozen=True)
class ReproduceOptions:
    """What to reproduce, where; paths default under ``runs/reproduce-<task>-<profile>``."""

    task: str
    profile: Profile
    model: str | None = None
    out_dir: Path | None = None
    reports_dir: Path = Path("reports")
    registry: Path | None = None
    device: str = "auto"
    #: Extra ``#SBATCH`` options for every Slurm job (``--sbatch KEY=VALUE``); see pipeline.slurm.
    sbatch: dict[str, str | None] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return self.model or self.profile.model

    @property
    def out(self) -> Path:
        return self.out_dir or Path("runs") / f"reproduce-{self.task}-{self.profile.name}"

    @property
    def registry_dir(self) -> Path:
        """The reproduction's own controller registry, so it never touches the user's."""
        return self.registry or self.out / "controllers"

    @property
    def table_path(self) -> Path:
        return self.out / TABLE_NAME


@dataclass
class ReproduceResult:
    """What a call did: samples written per run, controllers trained or reused, stage times."""

    written: dict[str, int] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    collected: bool = False
    stage_seconds: dict[str, float] = field(default_factory=dict)
    report: ReproduceReport | None = None  # set by the report stage


def controller_name(task: str, kind: str) -> str:
    """Registry name of the reproduction's controller of ``kind``, e.g. ``arith-mlp-h``."""
    return f"{task}-{kind}"


def train_run_dirs(options: ReproduceOptions) -> list[Path]:
    """The fixed-k training runs, one per k of the ladder."""
    return [options.out / f"train-k{k}" for k in options.profile.ladder]


def test_runs(options: ReproduceOptions) -> list[tuple[str, Path]]:
    """The held-out runs in the table's order, as (method name, run directory)."""
    out, profile = options.out, options.profile
    runs = [(f"Fixed k={profile.baseline_k}", out / f"test-k{profile.baseline_k}")]
    runs += [(METHOD_NAMES[kind], out / f"test-dps-{kind}") for kind in CONTROLLER_KINDS]
    runs.append((f"Temperature 1/alpha = {profile.temperature:g}", out / "test-temperature"))
    return runs


def base_config(
    options: ReproduceOptions, out: Path, method: str, *, test: bool, **overrides: Any
) -> SampleConfig:
    """A sampling config of the profile on the training or the held-out questions."""
    profile = options.profile
    settings: dict[str, Any] = {
        "bench": options.task, "out": out, "model": options.model_id, "method": method,
        "k": profile.baseline_k, "alpha": profile.alpha, "max_new_tokens": profile.max_new_tokens,
        "blocks": profile.blocks, "checkpoints": profile.checkpoints,
        "hidden_layer": profile.hidden_layer, "seeds": profile.seeds,
        "offset": profile.test_offset if test else 0,
        "limit": profile.test_questions if test else profile.train_questions,
        "device": options.device, "batch_size": profile.batch_size,
        "registry": options.registry_dir if method == "dps" else None,
        "command": f"python -m dps_cli.pipeline.reproduce --task {options.task} --profile {profile.name}",
    }  # fmt: skip
    return SampleConfig(**{**settings, **overrides})


def train_configs(options: ReproduceOptions) -> list[SampleConfig]:
    """Fixed-k power runs at every k of the ladder on the training questions."""
    return [
        base_config(options, run, "power", test=False, k=k)
        for k, run in zip(options.profile.ladder, train_run_dirs(options), strict=True)
    ]


def test_configs(options: ReproduceOptions) -> list[SampleConfig]:
    """Held-out runs: fixed k=8, DPS per controller, temperature 1/alpha.

    DPS runs leave tau unset: `dps sample` resolves it from the controller's card when it
    starts (`dps_cli.pipeline.chains.with_default_tau`), in process and under Slurm alike.
    """
    runs = {run.name: run for _, run in test_runs(options)}
    fixed = base_config(options, runs[f"test-k{options.profile.baseline_k}"], "power", test=True)
    dps = [
        base_config(options, runs[f"test-dps-{kind}"], "dps", test=True,
                    controller=controller_name(options.task, kind))
        for kind in CONTROLLER_KINDS
    ]  # fmt: skip
    temperature = base_config(
        options, runs["test-temperature"], "temperature", test=True,
        temperature=options.profile.temperature, hidden_layer=None,
        seeds=options.profile.temperature_seeds,  # enough samples for the compute-matched vote
    )  # fmt: skip
    return [fixed, *dps, temperature]


def check_split(options: ReproduceOptions) -> None:
    """Refuse a profile whose train + test questions exceed the task's questions."""
    from dps_cli.tasks import get_task

    available = len(get_task(options.task).load(None))
    wanted = options.profile.train_questions + options.profile.test_questions
    if wanted > available:
        raise UserError(
            f"Profile {options.profile.name!r} needs {wanted} questions but task "
            f"{options.task!r} has {available}.",
            "Pick a task with more questions (e.g. --task math500) or a smaller profile.",
        )


def sample_runs(
    configs: Sequence[SampleConfig], progress: ProgressFactory | None, result: ReproduceResult
) -> None:
    """Run (or resume) each config in turn; finished pairs are skipped by `sample` itself."""
    from dps_cli.pipeline.sample import sample

    for config in configs:
        logger.info("sampling %s (%s)", config.out.name, config.method)
        with (progress or _no_progress)(config.out.name) as callback:
            summary = sample(config, callback)
        result.written[config.out.name] = summary.written
        logger.info("%s: wrote %d, %d already stored, %.1fs", config.out.name, summary.written,
                    summary.skipped, summary.wall_time_s)  # fmt: skip


def stage_sample_train(
    options: ReproduceOptions, progress: ProgressFactory | None, result: ReproduceResult
) -> None:
    """Fixed-k power sampling on the training questions."""
    check_split(options)
    sample_runs(train_configs(options), progress, result)


def stage_collect_train(options: ReproduceOptions, result: ReproduceResult) -> None:
    """Collect the training table (unless fresh), then train or reuse every controller."""
    from dps_cli.pipeline.collect import collect
    from dps_cli.pipeline.train import file_sha256

    runs = train_run_dirs(options)
    if table_is_fresh(options.table_path, runs):
        logger.info(
            "training table %s is newer than every training sample; reusing it", options.table_path
        )
    else:
        summary = collect(runs, options.table_path)
        result.collected = True
        logger.info("collected %d rows over %d questions (%d labelled enough) into %s",
                    summary.rows, summary.questions, summary.positives, summary.path)  # fmt: skip
    fingerprint = file_sha256(options.table_path)
    for kind in CONTROLLER_KINDS:
        ensure_controller(options, kind, fingerprint, result)


def table_is_fresh(table: Path, runs: Sequence[Path]) -> bool:
    """Whether ``table`` exists and was written after every sample part of ``runs``."""
    from dps_cli.runs.parts import list_parts

    if not table.is_file():
        return False
    parts = [part for run in runs for part in list_parts(run / "samples")]
    newest = max((part.stat().st_mtime for part in parts), default=0.0)
    return table.stat().st_mtime >= newest


def ensure_controller(
    options: ReproduceOptions, kind: str, fingerprint: str, result: ReproduceResult
) -> None:
    """Reuse the controller if its card names this table; else train it and drop stale DPS runs."""
    from dps_cli.controllers.artifacts import CARD_FILE, read_card
    from dps_cli.controllers.training import TrainSettings
    from dps_cli.pipeline.train import train_controller

    name = controller_name(options.task, kind)
    directory = options.registry_dir / name
    if (directory / CARD_FILE).is_file():
        card = read_card(directory)
        if card.kind == kind and card.training_data_sha256 == fingerprint:
            logger.info("controller %s was trained on this table; reusing it", name)
            result.reused.append(name)
            return
    profile = options.profile
    settings = TrainSettings(gbdt_iterations=profile.gbdt_iterations, mlp_epochs=profile.mlp_epochs,
                             thread_count=profile.train_threads,
                             test_fraction=profile.controller_test_fraction)  # fmt: skip
    logger.info("training controller %s (%s)", name, kind)
    report = train_controller(kind, options.table_path, name, registry_dir=options.registry_dir,
                              force=True, settings=settings)  # fmt: skip
    result.trained.append(name)
    logger.info("controller %s: held-out ROC-AUC %.3f, recommended tau %s", name,
                report.card.metrics.roc_auc, report.card.recommended_tau)  # fmt: skip
    stale = options.out / f"test-dps-{kind}"
    if stale.exists():
        logger.warning("removing %s: it was sampled with the previous %s controller", stale, name)
        shutil.rmtree(stale)


def stage_sample_test(
    options: ReproduceOptions, progress: ProgressFactory | None, result: ReproduceResult
) -> None:
    """The held-out runs: fixed k=8, DPS with each controller, temperature 1/alpha."""
    check_split(options)
    sample_runs(test_configs(options), progress, result)


def stage_report(options: ReproduceOptions, result: ReproduceResult) -> None:
    """Evaluate the held-out runs, draw the figures and write reproduce.md."""
    from dps_cli.pipeline.reproduce_report import build_report

    result.report = build_report(options, read_timings(options.out))


def reproduce(
    options: ReproduceOptions,
    stages: Sequence[str] = STAGES,
    progress: ProgressFactory | None = None,
) -> ReproduceResult:
    """Run ``stages`` of the reproduction in order, timing each; see the module docstring."""
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise UserError(f"Unknown stage {unknown[0]!r}.", f"Use one of: {', '.join(STAGES)}.")
    result = ReproduceResult()
    options.out.mkdir(parents=True, exist_ok=True)
    runners: dict[str, Callable[[], None]] = {
        "sample-train": lambda: stage_sample_train(options, progress, result),
        "collect-train": lambda: stage_collect_train(options, result),
        "sample-test": lambda: stage_sample_test(options, progress, result),
        "report": lambda: stage_report(options, result),
    }
    for stage in STAGES:
        if stage in stages:
            with _timed(stage, options.out, result):
                runners[stage]()
    return result


def read_timings(out: Path) -> dict[str, float]:
    """Seconds per stage of the last call that did work in it (``<out>/timings.json``)."""
    path = out / TIMINGS_NAME
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(stage): float(seconds) for stage, seconds in data.items()}


@contextmanager
def _timed(stage: str, out: Path, result: ReproduceResult) -> Iterator[None]:
    """Log a stage's start and end; record its time unless it only reused stored work."""
    logger.info("stage %s: start", stage)
    started = time.perf_counter()
    written_before = sum(result.written.values())
    trained_before = len(result.trained)
    collected_before = result.collected
    yield
    seconds = time.perf_counter() - started
    result.stage_seconds[stage] = seconds
    logger.info("stage %s: done in %.1fs", stage, seconds)
    timings = read_timings(out)
    did_work = (
        sum(result.written.values()) > written_before
        or len(result.trained) > trained_before
        or result.collected != collected_before
        or stage == "report"
    )
    if did_work or stage not in timings:
        atomic_write_json(out / TIMINGS_NAME, {**timings, stage: round(seconds, 3)})


def _no_progress(_: str) -> AbstractContextManager[ProgressCallback | None]:
    return nullcontext(None)


__all__ = [
    "STAGES",
    "ReproduceOptions",
    "ReproduceResult",
    "SampleProgress",
    "main",
    "reproduce",
    "test_configs",
    "train_configs",
]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dps_cli.pipeline.reproduce`` (what `make reproduce` runs); see `dps_cli.cli.reproduce`."""
    from dps_cli.cli.reproduce import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    from dps_cli.pipeline.reproduce import main as _main  # the importable copy, not __main__

    raise SystemExit(_main())
