"""`dps sample` as a library function: questions × seeds through one engine into a run store.

Resumable: pairs already stored are skipped. Rows are buffered and written as atomic Parquet
parts (pipeline/writer.py): every ``flush_every`` finished chains, at most ``FLUSH_AFTER_S`` seconds
after a chain finishes, and on SIGTERM, SIGINT or an error, which then raise `Interrupted` or the
error once the finished chains are stored. One process writes a shard at a time (an OS lock).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dps_cli.config import SampleConfig, check_particles_fit
from dps_cli.errors import Interrupted, UserError
from dps_cli.models.loading import load_model, pick_device, resolve_model
from dps_cli.pipeline.chains import build_engine, make_driver, with_default_tau
from dps_cli.pipeline.plan import ChainPlan, plan_chain
from dps_cli.pipeline.stopping import StopSignals, stop_signals
from dps_cli.pipeline.writer import PartWriter
from dps_cli.runs.atomic import check_output_dir
from dps_cli.runs.schema import SCHEMA_VERSION
from dps_cli.runs.store import RunStore
from dps_cli.sampling.results import ChainResult
from dps_cli.tasks import get_task
from dps_cli.tasks.base import Question, Task

logger = logging.getLogger(__name__)


@dataclass
class SampleProgress:
    """What the progress bar shows; updated after every engine step and finished chain."""

    total: int
    done: int = 0
    skipped: int = 0
    tokens: int = 0
    tokens_per_s: float = 0.0
    proposals_attempted: int = 0
    proposals_accepted: int = 0

    @property
    def acceptance(self) -> float | None:
        return self.proposals_accepted / self.proposals_attempted if self.proposals_attempted else None


@dataclass(frozen=True)
class SampleSummary:
    run_dir: str
    written: int
    skipped: int
    total: int
    wall_time_s: float


ProgressCallback = Callable[[SampleProgress], None]


def select_questions(questions: list[Question], config: SampleConfig) -> list[Question]:
    """``--offset``/``--limit`` first (in data order), then every n-th question for ``--shard i/n``."""
    if config.offset and config.offset >= len(questions):
        raise UserError(
            f"--offset {config.offset} is beyond the data: {config.bench} has {len(questions)} questions.",
            f"Use an --offset below {len(questions)}.",
        )
    end = config.offset + config.limit if config.limit else None
    chosen = questions[config.offset:end]
    index, count = config.shard
    if index >= len(chosen):  # legitimate in a Slurm array with more tasks than questions
        logger.warning("--shard %d/%d selects no question: the selection holds %d (--offset %d, --limit %s); "
                       "nothing to sample.", index, count, len(chosen), config.offset, config.limit)  # fmt: skip
        return []
    return chosen[index::count]


def sample(config: SampleConfig, progress: ProgressCallback | None = None) -> SampleSummary:
    """Run (or resume) the sampling run described by ``config``.

    Raises `UserError` if another process writes the same shard of ``config.out``, and
    `Interrupted` on SIGTERM or SIGINT once every finished sample is stored.
    """
    started = time.perf_counter()
    config = with_default_tau(config)
    config = _resolved_backend(config)
    task = get_task(config.bench)
    questions = select_questions(task.load(config.data), config)
    resolve_model(config.model)  # a bad --model fails before the run directory is made
    _check_particles_fit(config)
    store = RunStore(config.out)
    check_output_dir(config.out, "--out", "Resuming a run writes to it too (locks, parts): copy the run to a "
                     "writable place and pass that as --out.", what="run directory")  # fmt: skip
    store.ensure_manifest(_manifest(config))
    with stop_signals() as stops, store.writing(config.shard, config.command) as lock:
        return _sample_locked(config, task, questions, store, stops, lock.tag, progress, started)


def _sample_locked(config: SampleConfig, task: Task, questions: list[Question], store: RunStore, stops: StopSignals,
                   tag: str, progress: ProgressCallback | None, started: float) -> SampleSummary:  # fmt: skip
    """The body of `sample` while this process holds the shard's lock and the stop signals."""
    done = store.completed_keys(repair=True)
    pending = [(q, s) for q in questions for s in config.seeds if (q.id, s) not in done]
    total = len(questions) * len(config.seeds)
    state = SampleProgress(total=total, done=total - len(pending), skipped=total - len(pending))
    if progress:
        progress(state)
    if not pending:
        return SampleSummary(str(config.out), 0, state.skipped, total, time.perf_counter() - started)

    loaded = load_model(config.model, config.device, config.dtype)
    store.ensure_manifest(_manifest(config, loaded.describe()))
    engine = build_engine(config, loaded)
    plans = (plan_chain(task, loaded.tokenizer, q, s) for q, s in pending)
    writer = PartWriter(store, config, loaded.tokenizer, task, loaded.source.model_id, stops, tag)

    def drivers() -> Iterator[tuple[ChainPlan, Any]]:
        for plan in plans:
            yield plan, make_driver(config, plan, loaded)

    def on_done(plan: ChainPlan, result: ChainResult) -> None:
        writer.add(plan, result)
        state.done += 1
        state.proposals_attempted += result.proposals_attempted
        state.proposals_accepted += result.proposals_accepted
        if progress:
            progress(state)

    def on_step(stats: Any) -> None:
        state.tokens, state.tokens_per_s = stats.tokens, stats.tokens_per_s
        writer.flush_if_due()
        if progress and stats.steps % 8 == 0:
            progress(state)

    def show_stored() -> None:  # the last frame shows what is stored, not what was in flight
        state.done = state.skipped + writer.written
        if progress:
            progress(state)

    try:
        engine.run(drivers(), on_done, on_step)
        writer.flush()
        show_stored()
    except Interrupted as stop:  # SIGTERM or SIGINT: store every finished chain, then say so
        stops.ignore()
        writer.flush()
        show_stored()
        raise Interrupted(stop.signum, f"Stopped by {stop.signal_name}: the {writer.written} samples "
                          f"finished in this session are stored in {config.out}; rerun the same command "
                          "to resume.") from None  # fmt: skip
    except BaseException:  # an error (or a plain KeyboardInterrupt): keep finished chains too
        stops.ignore()
        writer.flush_after_error()
        show_stored()
        raise
    finally:
        engine.close()
    return SampleSummary(str(config.out), writer.written, state.skipped, total, time.perf_counter() - started)


def _check_particles_fit(config: SampleConfig) -> None:
    """--method smc: N particles must fit in the device's default batch (SampleConfig checks an
    explicit --batch-size), before the run directory is made."""
    if config.method == "smc" and config.batch_size is None:
        device = pick_device(config.device)
        check_particles_fit(config.particles, config.resolved_batch_size(device),
                            f"the default --batch-size on {device.split(':')[0]}")


def _resolved_backend(config: SampleConfig) -> SampleConfig:
    """Replace ``--backend auto`` by the backend that will run: it is part of the run's identity."""
    from dataclasses import replace

    from dps_cli.sampling.factory import resolve_backend

    return replace(config, backend=resolve_backend(config.backend))


def _manifest(config: SampleConfig, model: dict[str, Any] | None = None) -> dict[str, Any]:
    from dps_cli.runs.provenance import provenance

    device = pick_device(config.device)  # what `load_model` will use; timings depend on both
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": config.out.name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": config.command,
        "config": config.identity(),
        "run": {"seeds": list(config.seeds), "offset": config.offset, "limit": config.limit, "shard": list(config.shard),
                "device": device, "dtype": config.dtype, "batch_size": config.resolved_batch_size(device)},
        **provenance(),
    }
    if model is not None:
        manifest["model"] = model
    return manifest
