"""Data resolution: --data file formats, DPS_DATA_DIR, the Hub fallback, and its errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from dps_cli.errors import UserError
from dps_cli.tasks.base import Question
from dps_cli.tasks.gpqa import GpqaTask
from dps_cli.tasks.loading import (
    DatasetSource,
    load_records,
    read_records_file,
    text_id,
    unique_questions,
)
from dps_cli.tasks.math500 import Math500Task

ROWS = [{"prompt": "1+1?", "answer": "2", "id": "a"}, {"prompt": "2+2?", "answer": "4", "id": "b"}]
SOURCE = DatasetSource(task="toy", file_name="toy.json", hub_path="someone/toy", hub_split="test")


@pytest.fixture(autouse=True)
def _no_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DPS_DATA_DIR", raising=False)


def write_json(path: Path, rows: Any) -> Path:
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_reads_json_list(tmp_path: Path) -> None:
    records = read_records_file(write_json(tmp_path / "x.json", ROWS))
    assert records.rows == ROWS
    assert records.origin == f"data file {tmp_path / 'x.json'}"


def test_reads_json_lines_with_blank_lines_and_line_separators(tmp_path: Path) -> None:
    rows = [*ROWS, {"prompt": "a\u2028b", "answer": "1", "id": "c"}]
    path = write_jsonl(tmp_path / "x.jsonl", rows)
    path.write_text(path.read_text(encoding="utf-8") + "\n\n", encoding="utf-8")
    assert read_records_file(path).rows == rows


def test_reads_json_lines_with_raw_u2028(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    line = json.dumps({"prompt": "a\u2028b", "answer": "1"}, ensure_ascii=False)
    path.write_text(line + "\n", encoding="utf-8")
    assert read_records_file(path).rows == [{"prompt": "a\u2028b", "answer": "1"}]


def test_reads_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert read_records_file(path).rows == ROWS


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('[{"a": 1},', "is not valid JSON"),
        ('{"a": 1}\n{oops}\n', "Line 2 of data file"),
        ("[]", "holds no records"),
        ("[1, 2]", "Record 0 of data file"),
    ],
)
def test_malformed_files_name_the_file(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as info:
        read_records_file(path)
    assert expected in info.value.message
    assert str(path) in info.value.message


def test_bad_parquet_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_text("not parquet", encoding="utf-8")
    with pytest.raises(UserError, match="as Parquet"):
        read_records_file(path)


def test_missing_data_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        load_records(SOURCE, tmp_path / "nope.json")
    assert info.value.message == f"Data file {tmp_path / 'nope.json'} does not exist."


def test_data_directory_is_searched_for_the_default_file(tmp_path: Path) -> None:
    write_json(tmp_path / "toy.json", ROWS)
    assert load_records(SOURCE, tmp_path).rows == ROWS
    with pytest.raises(UserError, match="has no other.json"):
        load_records(
            DatasetSource(task="o", file_name="other.json", hub_path="x/y", hub_split="t"),
            tmp_path,
        )


def test_missing_field_names_file_record_and_field(tmp_path: Path) -> None:
    path = write_json(tmp_path / "m.json", [{"prompt": "1+1?", "answer": "2"}, {"prompt": "x"}])
    with pytest.raises(UserError) as info:
        Math500Task().load(path)
    assert info.value.message == f"Record 1 of data file {path} has no 'answer' field."
    assert info.value.hint == "Fields found: prompt."


def test_explicit_file_beats_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "dir"
    data_dir.mkdir()
    write_json(data_dir / "toy.json", [{"prompt": "dir", "answer": "0"}])
    explicit = write_json(tmp_path / "mine.json", ROWS)
    monkeypatch.setenv("DPS_DATA_DIR", str(data_dir))
    assert load_records(SOURCE, explicit).rows == ROWS
    assert load_records(SOURCE, None).rows == [{"prompt": "dir", "answer": "0"}]


def _fail_hub(monkeypatch: pytest.MonkeyPatch, calls: list[tuple[Any, ...]]) -> None:
    import datasets

    def load_dataset(*args: Any, **kwargs: Any) -> Any:
        calls.append((*args, kwargs))
        raise ConnectionError("Couldn't reach the Hub\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


def test_hub_failure_names_dataset_and_suggests_local_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, ...]] = []
    _fail_hub(monkeypatch, calls)
    monkeypatch.setenv("DPS_DATA_DIR", str(tmp_path))
    with pytest.raises(UserError) as info:
        Math500Task().load()
    assert calls == [("HuggingFaceH4/MATH-500", None, {"split": "test"})]
    assert info.value.message == (
        "Could not load math500 from the Hugging Face Hub (HuggingFaceH4/MATH-500): "
        "ConnectionError: Couldn't reach the Hub."
    )
    assert info.value.hint == (
        "Check your network, or pass --data FILE or set DPS_DATA_DIR to a directory holding "
        f"math500.json (DPS_DATA_DIR={tmp_path} has none)."
    )


def test_gated_gpqa_failure_explains_access(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    _fail_hub(monkeypatch, calls)
    with pytest.raises(UserError) as info:
        GpqaTask().load()
    assert calls == [("Idavidrein/gpqa", "gpqa_diamond", {"split": "train"})]
    assert "Idavidrein/gpqa is a gated dataset on the Hugging Face Hub" in info.value.message
    assert info.value.hint == (
        "Accept its terms at https://huggingface.co/datasets/Idavidrein/gpqa while logged in, "
        "then run `huggingface-cli login` or set HF_TOKEN; or pass --data FILE or set "
        "DPS_DATA_DIR to a directory holding gpqa_diamond.jsonl."
    )


def test_hub_records_are_used_when_the_hub_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    hub_rows = [{"problem": "1+1?", "answer": "2", "unique_id": "test/x/1.json", "level": 1}]
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: iter(hub_rows))
    [question] = Math500Task().load()
    assert question == Question(
        task="math500", id="test/x/1.json", text="1+1?", reference="2", extra={"level": "1"}
    )


def test_text_id_is_short_stable_and_ignores_surrounding_whitespace() -> None:
    digest = hashlib.sha1(b"What?").hexdigest()[:12]
    assert text_id("gpqa", "What?") == f"gpqa-{digest}"
    assert text_id("gpqa", " What?\n") == f"gpqa-{digest}"
    assert text_id("gpqa", "What!") != f"gpqa-{digest}"


def test_unique_questions_drops_repeats_and_rejects_clashes() -> None:
    a = Question(task="t", id="q1", text="x", reference="1")
    again = Question(task="t", id="q1", text="x", reference="1", extra={"source": "other"})
    b = Question(task="t", id="q2", text="y", reference="2")
    assert unique_questions([a, b, again], "file f") == [a, b]
    clash = Question(task="t", id="q1", text="z", reference="3")
    with pytest.raises(UserError, match="Two different questions in file f share the id 'q1'"):
        unique_questions([a, clash], "file f")
