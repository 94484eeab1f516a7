"""`dps reproduce` (what `make reproduce` runs): the DPS paper's pipeline end to end, resumable.

    dps reproduce --task arith --profile cpu

Stages (``--stage`` runs one; the default runs all four in order):

1. ``sample-train`` — fixed-k power sampling at k = 2, 4, 6, 8 on the training questions;
2. ``collect-train`` — `collect` the training table, then train gbdt, mlp-h and mlp-hq;
3. ``sample-test`` — on the held-out questions: fixed k=8, DPS with each controller at its
   recommended tau, Power-SMC with as many particles as fixed k=8 spends tokens
   (`Profile.smc_particles`), and plain sampling at temperature 1/alpha;
4. ``report`` — `evaluate_runs`, `passk_table`, the paper-style table and reports/reproduce.md.

Every stage is idempotent. Sampling skips stored (question, seed) pairs by itself; collect is
skipped while the table is newer than every training sample; a controller is retrained only
when the reproduce registry lacks it or its card names another training table (SHA-256), and
then the DPS run that used the old one is removed. So an interrupted reproduction, run again,
finishes without recomputing finished work. ``--slurm`` submits the same stages as Slurm jobs
(`dps_cli.reproduce.slurm`).
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

from dps_cli.config import SampleConfig
from dps_cli.controllers.artifacts import CARD_FILE, read_card
from dps_cli.controllers.fitting import TrainSettings
from dps_cli.errors import UserError
from dps_cli.pipeline.collect import collect
from dps_cli.pipeline.sample import ProgressCallback, sample
from dps_cli.pipeline.train import file_sha256, train_controller
from dps_cli.reproduce.report import build_report
from dps_cli.reproduce.runs import (
    STAGES,
    TIMINGS_NAME,
    ReproduceOptions,
    check_split,
    controller_name,
    test_configs,
    train_configs,
    train_run_dirs,
)
from dps_cli.reproduce.table import ReproduceReport
from dps_cli.runs.atomic import atomic_write_json
from dps_cli.runs.parts import list_parts

logger = logging.getLogger(__name__)

ProgressFactory = Callable[[str], AbstractContextManager[ProgressCallback | None]]


@dataclass
class ReproduceResult:
    """What a call did: samples written per run, controllers trained or reused, stage times."""

    written: dict[str, int] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    collected: bool = False
    stage_seconds: dict[str, float] = field(default_factory=dict)
    report: ReproduceReport | None = None  # set by the report stage


def sample_runs(
    configs: Sequence[SampleConfig], progress: ProgressFactory | None, result: ReproduceResult
) -> None:
    """Run (or resume) each config in turn; finished pairs are skipped by `sample` itself."""
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
    for kind in options.kinds:
        ensure_controller(options, kind, fingerprint, result)


def table_is_fresh(table: Path, runs: Sequence[Path]) -> bool:
    """Whether ``table`` exists and was written after every sample part of ``runs``."""
    if not table.is_file():
        return False
    parts = [part for run in runs for part in list_parts(run / "samples")]
    newest = max((part.stat().st_mtime for part in parts), default=0.0)
    return table.stat().st_mtime >= newest


def ensure_controller(
    options: ReproduceOptions, kind: str, fingerprint: str, result: ReproduceResult
) -> None:
    """Reuse the controller if its card names this table; else train it and drop stale DPS runs."""
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
    """The held-out runs: fixed k=8, DPS with each controller, Power-SMC, temperature 1/alpha."""
    check_split(options)
    sample_runs(test_configs(options), progress, result)


def stage_report(options: ReproduceOptions, result: ReproduceResult) -> None:
    """Evaluate the held-out runs, draw the figures and write reproduce.md."""
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
    from dps_cli.runs.atomic import check_output_dir

    check_output_dir(options.out, "--out-dir")  # before any stage, so no work is lost to it
    check_output_dir(options.reports_dir, "--reports-dir")
    if options.registry is not None:
        check_output_dir(options.registry, "--registry")
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


