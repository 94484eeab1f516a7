"""Where a task's records come from: an explicit file, ``DPS_DATA_DIR``, or the Hugging Face Hub.

Resolution order (the first that applies wins):

1. ``--data FILE`` — a JSON list, JSON lines, or Parquet file (a directory is searched for the
   task's default file name);
2. ``$DPS_DATA_DIR/<default file name>`` (``math500.json``, ``gpqa_diamond.jsonl``, ...);
3. ``datasets.load_dataset`` on the Hub.

Every failure a user can fix (missing file, bad JSON, missing field, no network, gated dataset)
becomes a `UserError` that names the file or dataset and says what to do. Also holds the helpers
the task modules share: reading a field from a record, hashing text into a stable id, and
rejecting duplicate ids.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dps_cli.errors import UserError
from dps_cli.paths import benchmark_data_dir
from dps_cli.tasks.base import Question

logger = logging.getLogger(__name__)

HUB_URL = "https://huggingface.co/datasets/"


@dataclass(frozen=True)
class DatasetSource:
    """Where one benchmark lives: its local default file name and its Hub coordinates."""

    task: str
    file_name: str
    hub_path: str
    hub_split: str
    hub_config: str | None = None
    gated: bool = False


@dataclass(frozen=True)
class Records:
    """Raw records plus a phrase naming their origin, so errors can point at the culprit."""

    rows: Sequence[Mapping[str, Any]]
    origin: str

    def field(self, index: int, *names: str, default: str | None = None) -> str:
        """The first present, non-null field among ``names`` in record ``index``, as a string.

        Accepting several names lets one task read both the Hub's and a local file's spelling
        (``problem``/``prompt``, ``unique_id``/``id``). A missing field without ``default`` is a
        `UserError` naming the origin, the record and the expected field names.
        """
        row = self.rows[index]
        for name in names:
            value = row.get(name)
            if value is not None:
                return value if isinstance(value, str) else str(value)
        if default is not None:
            return default
        wanted = " or ".join(repr(n) for n in names)
        raise UserError(
            f"Record {index} of {self.origin} has no {wanted} field.",
            f"Fields found: {', '.join(sorted(map(str, row))) or 'none'}.",
        )


def load_records(source: DatasetSource, data: Path | None) -> Records:
    """The records for ``source``: from ``data``, else ``DPS_DATA_DIR``, else the Hub."""
    if data is not None:
        return read_records_file(resolve_data_path(data, source.file_name))
    data_dir = benchmark_data_dir()
    if data_dir is not None:
        local = data_dir / source.file_name
        if local.is_file():
            return read_records_file(local)
        logger.info("DPS_DATA_DIR=%s has no %s; trying the Hub", data_dir, source.file_name)
    return load_hub_records(source, data_dir)


def resolve_data_path(data: Path, file_name: str) -> Path:
    """``data`` itself, or ``data/file_name`` when ``data`` is a directory; it must exist."""
    path = data.expanduser()
    if path.is_dir():
        candidate = path / file_name
        if not candidate.is_file():
            raise UserError(
                f"Data directory {path} has no {file_name}.",
                "Pass the file itself with --data FILE.",
            )
        return candidate
    if not path.exists():
        raise UserError(f"Data file {path} does not exist.", "Check the --data path.")
    return path


def read_records_file(path: Path) -> Records:
    """Read a JSON list, JSON lines or Parquet file into a list of records (dicts)."""
    origin = f"data file {path}"
    if path.suffix.lower() == ".parquet":
        rows = _read_parquet(path)
    else:
        rows = _read_json(path)
    if not rows:
        raise UserError(f"The {origin} holds no records.", "Point --data at a non-empty file.")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(
                f"Record {index} of {origin} is a {type(row).__name__}, not an object.",
                "Each record must be a JSON object with the task's fields.",
            )
    return Records(rows=rows, origin=origin)


def _read_parquet(path: Path) -> list[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return list(pq.read_table(path).to_pylist())
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"Could not read {path} as Parquet: {exc}.", "Check the file.") from exc


def _read_json(path: Path) -> list[Any]:
    """Parse a whole-file JSON list, or else one JSON value per non-empty line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Could not read data file {path}: {exc}.", "Check the file.") from exc
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"Data file {path} is not valid JSON: {exc}.",
                "Expected a JSON list of objects, JSON lines, or Parquet.",
            ) from exc
        return list(rows)
    rows = []
    # Split on "\n" only: str.splitlines() also breaks at U+2028 and friends inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UserError(
                f"Line {number} of data file {path} is not valid JSON: {exc.msg}.",
                "Expected a JSON list of objects, JSON lines, or Parquet.",
            ) from exc
    return rows


def load_hub_records(source: DatasetSource, data_dir: Path | None = None) -> Records:
    """Load ``source`` with ``datasets.load_dataset``; any failure becomes a `UserError`.

    The Hub can fail in many ways (offline, no token, terms not accepted, renamed dataset) and
    the ``datasets`` library raises a different exception type for each, so the catch is broad;
    the original error is chained and quoted, never swallowed.
    """
    origin = f"Hugging Face dataset {source.hub_path}"
    try:
        import datasets

        dataset = datasets.load_dataset(source.hub_path, source.hub_config, split=source.hub_split)
        rows = [dict(row) for row in dataset]
    except Exception as exc:  # noqa: BLE001 - re-raised as a UserError with the cause chained
        raise _hub_error(source, data_dir, exc) from exc
    return Records(rows=rows, origin=origin)


def _hub_error(source: DatasetSource, data_dir: Path | None, exc: Exception) -> UserError:
    local = f"pass --data FILE or set DPS_DATA_DIR to a directory holding {source.file_name}"
    if data_dir is not None:
        local += f" (DPS_DATA_DIR={data_dir} has none)"
    cause = _describe(exc)
    if source.gated:
        return UserError(
            f"Could not load {source.task}: {source.hub_path} is a gated dataset on the "
            f"Hugging Face Hub and loading it failed ({cause}).",
            f"Accept its terms at {HUB_URL}{source.hub_path} while logged in, then run "
            f"`huggingface-cli login` or set HF_TOKEN; or {local}.",
        )
    return UserError(
        f"Could not load {source.task} from the Hugging Face Hub ({source.hub_path}): {cause}.",
        f"Check your network, or {local}.",
    )


def _describe(exc: Exception) -> str:
    """``Type: first line of the message`` — enough to tell offline from forbidden."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def text_id(prefix: str, text: str) -> str:
    """A short stable id from text: ``prefix-<first 12 hex digits of sha1(text)>``.

    Used where the dataset has no id of its own; it depends only on the text, so it survives
    reordering of the file and is identical on every machine.
    """
    digest = hashlib.sha1(text.strip().encode("utf-8")).hexdigest()[:12]
    return f"{prefix}-{digest}"


def unique_questions(questions: Iterable[Question], origin: str) -> list[Question]:
    """Drop repeats (logged) and reject two different questions sharing one id.

    Runs are keyed by (question id, seed), so a clash would silently merge two questions. A
    repeat has the same text, reference and choices; its metadata (``extra``) may differ.
    """
    seen: dict[str, Question] = {}
    kept: list[Question] = []
    for question in questions:
        previous = seen.get(question.id)
        if previous is None:
            seen[question.id] = question
            kept.append(question)
        elif _content(previous) == _content(question):
            logger.warning("%s repeats question %s; keeping the first", origin, question.id)
        else:
            raise UserError(
                f"Two different questions in {origin} share the id {question.id!r}.",
                "Give every record a unique id.",
            )
    return kept


def _content(question: Question) -> tuple[str, str, tuple[str, ...]]:
    return (question.text, question.reference, question.choices)


def check_choice_order(order: Sequence[int] | None, question: Question) -> tuple[int, ...]:
    """``order`` as a tuple, if it is a permutation of the question's choice indices."""
    if order is None or sorted(order) != list(range(len(question.choices))):
        raise ValueError(
            f"choice order {order!r} is not a permutation of the {len(question.choices)} "
            f"choices of {question.id}"
        )
    return tuple(order)
