"""The training table `dps collect` writes and `dps train-controller` reads (schema declared once).

One row per (question, seed, k, checkpoint) of fixed-k power runs. A sample that stopped before
its first checkpoint keeps one row with a null ``checkpoint_block`` and null features: it cannot
train a controller, but the tau replay needs it (the chain would have finished at k=2).
Label: ``enough = correct or not correct_k8`` (DESIGN §1).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from dps_cli.controllers.features import SCALAR_FEATURES, CheckpointFeatures
from dps_cli.errors import UserError
from dps_cli.runs.schema import CHECKPOINT_TYPE

if TYPE_CHECKING:
    import polars as pl

TABLE_VERSION = "1.0"

TABLE_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("task", pa.string()),
        ("model", pa.string()),
        ("alpha", pa.float32()),
        ("question_id", pa.string()),
        ("seed", pa.int32()),
        ("k", pa.int32()),
        ("checkpoint_block", pa.int32()),  # null: the sample ended before its first checkpoint
        # the scalar features and hidden vector, typed as in the run schema's checkpoint records
        *((name, CHECKPOINT_TYPE.field(name).type) for name in (*SCALAR_FEATURES, "hidden")),
        ("question_embedding", pa.list_(pa.float32())),
        ("hidden_layer", pa.int32()),
        ("correct", pa.bool_()),
        ("correct_k8", pa.bool_()),
        ("enough", pa.bool_()),
        ("wall_time_s", pa.float64()),
    ],
    metadata={b"dps_table_version": TABLE_VERSION.encode()},
)


def write_table(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` (columns of `TABLE_SCHEMA`) as Parquet, atomically."""
    import pyarrow.parquet as pq

    from dps_cli.runs.atomic import atomic_write_bytes, check_output_file

    check_output_file(path, "--out")
    table = frame.select(TABLE_SCHEMA.names).to_arrow().cast(TABLE_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, sink.getvalue().to_pybytes())
    except OSError as err:  # a parent is a file, no permission, disk full
        raise UserError(f"Could not write {path}: {err.strerror}.", "Pass a writable --out.") from None


def read_table(path: Path) -> pl.DataFrame:
    """Read a collect table; refuses a missing file or a Parquet file of another shape."""
    import polars as pl

    if not path.is_file():
        raise UserError(
            f"Training table {path} {'is not a file' if path.exists() else 'does not exist'}.",
            "Build one with 'dps collect RUN... --out TABLE.parquet'.",
        )
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(
            f"Training table {path} is not a readable Parquet file ({first}).",
            "Build one with 'dps collect RUN... --out TABLE.parquet'.",
        ) from None
    missing = [name for name in TABLE_SCHEMA.names if name not in frame.columns]
    if missing:
        raise UserError(
            f"{path} is not a dps collect table (missing columns: {', '.join(missing)}).",
            "Build one with 'dps collect RUN... --out TABLE.parquet'.",
        )
    return frame


def checkpoint_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Only the rows that are real checkpoints (the ones a controller can learn from)."""
    import polars as pl

    return frame.filter(pl.col("checkpoint_block").is_not_null())


def checkpoint_features(frame: pl.DataFrame) -> list[CheckpointFeatures]:
    """One `CheckpointFeatures` per row of a table (checkpoint rows only)."""
    scalars = frame.select(SCALAR_FEATURES).to_numpy().astype(np.float64)
    hidden = _vectors(frame, "hidden")
    embedding = _vectors(frame, "question_embedding")
    return [
        CheckpointFeatures(
            scalars=dict(zip(SCALAR_FEATURES, scalars[i].tolist(), strict=True)),
            hidden=hidden[i],
            question_embedding=embedding[i],
        )
        for i in range(frame.height)
    ]


def vector_width(frame: pl.DataFrame, column: str) -> int | None:
    """The common width of a list column; None if every value is null; refuses mixed widths."""
    import polars as pl

    widths = frame.select(pl.col(column).list.len().drop_nulls().unique())[column].to_list()
    if not widths:
        return None
    if len(widths) > 1:
        raise UserError(
            f"The table's {column} vectors have different widths ({sorted(widths)}).",
            "Collect runs of one model and one hidden layer into one table.",
        )
    return int(widths[0])


def _vectors(frame: pl.DataFrame, column: str) -> list[np.ndarray | None]:
    """Rows of a list<float32> column as arrays (None where null), without a loop per value."""
    series = frame[column]
    width = vector_width(frame, column)
    if width is None:
        return [None] * frame.height
    nulls = series.is_null().to_numpy()
    dense = series.fill_null([0.0] * width).explode().to_numpy().astype(np.float32)
    dense = dense.reshape(frame.height, width)
    return [None if nulls[i] else dense[i] for i in range(frame.height)]
