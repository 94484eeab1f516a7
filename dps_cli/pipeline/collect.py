"""`collect`: turn fixed-k power runs (k = 2, 4, 6, 8) into one controller training table.

    from dps_cli.pipeline.collect import collect
    summary = collect([Path("runs/k2"), Path("runs/k4"), Path("runs/k6"), Path("runs/k8")],
                      Path("table.parquet"))

One row per (question, seed, k, checkpoint), labelled ``enough = correct(k) or not correct(8)``
(DESIGN §1). Correctness comes from each run's grades (graded now when missing or stale). The
table layout is `dps_cli.controllers.table.TABLE_SCHEMA`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dps_cli.config import K_SCHEDULE
from dps_cli.controllers.features import SCALAR_FEATURES
from dps_cli.controllers.table import TABLE_SCHEMA, write_table
from dps_cli.errors import UserError

if TYPE_CHECKING:
    import polars as pl

logger = logging.getLogger(__name__)

SAMPLE_COLUMNS = (
    "run_id", "task", "model", "alpha", "question_id", "seed", "wall_time_s", "hidden_layer",
    "checkpoints", "question_embedding",
)  # fmt: skip
SAME_ACROSS_RUNS = ("task", "model", "alpha", "hidden_layer")
REFERENCE_K = K_SCHEDULE.max  # every k of the ladder is labelled against this one


@dataclass(frozen=True)
class CollectSummary:
    """What `collect` wrote."""

    rows: int
    questions: int
    positives: int  # rows labelled enough
    path: Path
    dropped_rows: int = 0  # rows whose (question, seed) has no k=8 sample
    runs: int = 0


@dataclass(frozen=True)
class RunInfo:
    """The manifest facts that decide whether runs can share a table."""

    path: Path
    name: str
    method: str
    k: int
    task: str
    model: str
    alpha: float
    hidden_layer: int | None


def collect(run_dirs: Sequence[Path], out: Path, workers: int | None = None) -> CollectSummary:
    """Build the training table from fixed-k power runs and write it atomically to ``out``.

    Args:
        run_dirs: run directories of one task, model, alpha and hidden layer; one must have k=8.
        out: the Parquet file to write.
        workers: grading parallelism for runs that still need grading.

    """
    import polars as pl

    if not run_dirs:
        raise UserError("No runs given.", "Pass the fixed-k power run directories to collect.")
    infos = [read_run_info(Path(path)) for path in run_dirs]
    check_runs(infos)
    frame = pl.concat([run_rows(info, workers) for info in infos], how="vertical")
    _check_no_overlap(frame)
    reference = (
        frame.filter(pl.col("k") == REFERENCE_K)
        .select("question_id", "seed", pl.col("correct").alias("correct_k8"))
        .unique(subset=["question_id", "seed"])
    )
    joined = frame.join(reference, on=["question_id", "seed"], how="left")
    dropped = int(joined["correct_k8"].null_count())
    if dropped:
        logger.warning("dropping %d rows whose (question, seed) has no k=8 sample", dropped)
    table = (
        joined.filter(pl.col("correct_k8").is_not_null())
        .with_columns(enough=pl.col("correct") | ~pl.col("correct_k8"))
        .sort("question_id", "seed", "k", "checkpoint_block", nulls_last=False)
        .select(TABLE_SCHEMA.names)
    )
    write_table(table, out)
    return CollectSummary(
        rows=table.height,
        questions=table["question_id"].n_unique(),
        positives=int(table["enough"].sum()),
        path=out,
        dropped_rows=dropped,
        runs=len(infos),
    )


def read_run_info(path: Path) -> RunInfo:
    """The method, k, task, model, alpha and hidden layer recorded in a run's manifest."""
    from dps_cli.runs.store import RunStore

    manifest = RunStore.open_existing(path).read_manifest()
    config: dict[str, Any] = manifest.get("config", {})
    model = manifest.get("model")
    model_id = model.get("id") if isinstance(model, dict) else None
    return RunInfo(
        path=path,
        name=path.name,
        method=str(config.get("method")),
        k=int(config.get("k") or 0),
        task=str(config.get("task")),
        model=str(model_id or config.get("model")),
        alpha=float(config.get("alpha") or 0.0),
        hidden_layer=config.get("hidden_layer"),
    )


def check_runs(infos: Sequence[RunInfo]) -> None:
    """Refuse non-power runs, k outside the ladder, mixed task/model/alpha/layer, and no k=8."""
    ladder = ", ".join(str(k) for k in K_SCHEDULE.ladder())
    for info in infos:
        if info.method != "power":
            raise UserError(
                f"Run {info.name} was sampled with method {info.method!r}; dps collect takes "
                "fixed-k power runs.",
                f"Pass runs sampled with --method power and --k in {ladder}.",
            )
        if info.k not in K_SCHEDULE.ladder():
            raise UserError(
                f"Run {info.name} used k={info.k}; dps collect takes fixed-k runs with k in "
                f"{ladder}.",
                f"Sample the runs again with --k in {ladder}.",
            )
    first = infos[0]
    for info in infos[1:]:
        for field in SAME_ACROSS_RUNS:
            if getattr(info, field) != getattr(first, field):
                raise UserError(
                    f"Runs differ in {field}: {getattr(first, field)} ({first.name}) vs "
                    f"{getattr(info, field)} ({info.name}).",
                    "Collect runs of one task, model, alpha and hidden layer into one table.",
                )
    if not any(info.k == REFERENCE_K for info in infos):
        raise UserError(
            f"None of the runs has k={REFERENCE_K}; labels compare every k with k={REFERENCE_K}.",
            f"Add a fixed-k power run sampled with --k {REFERENCE_K}.",
        )


def run_rows(info: RunInfo, workers: int | None = None) -> pl.DataFrame:
    """One row per (question, seed, checkpoint) of one run, with its correctness (unlabelled).

    ``source_run`` (the directory name) is kept for error messages and dropped when writing.
    """
    import polars as pl

    from dps_cli.pipeline.grading import ensure_grades
    from dps_cli.runs.store import RunStore

    samples = RunStore.open_existing(info.path).scan().select(SAMPLE_COLUMNS).collect()
    grades = ensure_grades(info.path, workers=workers).select("question_id", "seed", "correct")
    samples = samples.join(grades, on=["question_id", "seed"], how="left")
    ungraded = int(samples["correct"].null_count())
    if ungraded:
        raise UserError(
            f"Run {info.name} has {ungraded} sample(s) without a correct/incorrect grade "
            f"(task {info.task}); controllers need graded runs.",
            "Collect runs of a task that dps can grade locally.",
        )
    samples = samples.with_columns(
        k=pl.lit(info.k, dtype=pl.Int32), source_run=pl.lit(info.name, dtype=pl.String)
    )
    has_checkpoints = pl.col("checkpoints").list.len().fill_null(0) > 0
    exploded = samples.filter(has_checkpoints).explode("checkpoints")
    checkpoint = pl.col("checkpoints").struct
    with_checkpoints = exploded.with_columns(
        checkpoint.field("block").alias("checkpoint_block"),
        checkpoint.field("hidden").alias("hidden"),
        *[checkpoint.field(name).alias(name) for name in SCALAR_FEATURES],
    )
    without = samples.filter(~has_checkpoints).with_columns(
        pl.lit(None, dtype=pl.Int32).alias("checkpoint_block"),
        pl.lit(None, dtype=pl.List(pl.Float32)).alias("hidden"),
        *[pl.lit(None, dtype=pl.Float32).alias(name) for name in SCALAR_FEATURES],
    )
    columns = [name for name in TABLE_SCHEMA.names if name not in ("correct_k8", "enough")]
    schema = pl.Schema({name: dtype for name, dtype in _polars_schema().items() if name in columns})
    parts = [part.select(*columns, "source_run") for part in (with_checkpoints, without)]
    return pl.concat([part.cast(schema) for part in parts], how="vertical")


def _polars_schema() -> pl.Schema:
    """TABLE_SCHEMA in polars types."""
    import polars as pl

    empty = pl.from_arrow(TABLE_SCHEMA.empty_table())
    assert isinstance(empty, pl.DataFrame)  # a Table (not an Array) always converts to a frame
    return empty.schema


def _check_no_overlap(frame: pl.DataFrame) -> None:
    """Two runs at the same k may split questions (shards) but must not both hold a pair."""
    import polars as pl

    per_sample = frame.select("source_run", "question_id", "seed", "k").unique()
    clash = (
        per_sample.group_by("question_id", "seed", "k")
        .agg(pl.col("source_run"))
        .filter(pl.col("source_run").list.len() > 1)
    )
    if clash.height:
        qid, seed, k, runs = clash.sort("question_id", "seed", "k").row(0)
        raise UserError(
            f"Runs {' and '.join(sorted(runs))} both hold question {qid} seed {seed} at k={k}.",
            "Pass each (question, seed) at each k once.",
        )
