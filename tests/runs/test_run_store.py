"""RunStore: atomic parts, resume keys, manifest checks and refusal of files it cannot read."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dps_cli.errors import UserError
from dps_cli.runs.atomic import atomic_write_bytes, atomic_write_json, atomic_write_with
from dps_cli.runs.schema import SAMPLE_SCHEMA, SCHEMA_VERSION
from dps_cli.runs.store import RunStore
from tests.factories import manifest_for, run_config, sample_row, write_run


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_write_part_round_trips_rows_and_keeps_schema_version(tmp_path: Path) -> None:
    checkpoint = {
        "block": 1, "k": 2, "mcmc_perplexity": 1.5, "mcmc_entropy": 0.5,
        "mcmc_self_confidence": 0.9, "acceptance_ratio": 0.25, "question_time_sec": 3.0,
        "current_k": 2, "hidden": [0.5, -0.5], "p_enough": 0.75, "escalated": False,
    }  # fmt: skip
    row = sample_row(choice_order=[2, 0, 1], checkpoints=[checkpoint], question_embedding=[1.0])
    store = RunStore(tmp_path / "run")
    part = store.write_part([row, sample_row(seed=1)])
    assert part.parent == store.samples_dir
    assert part.name.startswith("part-00000-") and part.suffix == ".parquet"
    assert pq.read_schema(part).metadata[b"dps_schema_version"] == SCHEMA_VERSION.encode()
    frame = store.read_samples().sort("seed")
    assert frame.columns == SAMPLE_SCHEMA.names
    assert frame["seed"].to_list() == [0, 1]
    assert frame["choice_order"][0].to_list() == [2, 0, 1]
    assert frame["checkpoints"][0][0]["hidden"] == [0.5, -0.5]
    assert frame["checkpoints"][0][0]["p_enough"] == 0.75


def test_parts_are_never_overwritten_and_leave_no_temp_files(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    first = store.write_part([sample_row(seed=0)])
    content = first.read_bytes()
    second = store.write_part([sample_row(seed=1)])
    assert first != second
    assert second.name.startswith("part-00001-")
    assert first.read_bytes() == content
    assert _tree(store.samples_dir) == sorted([first.name, second.name])


def test_write_part_rejects_rows_that_do_not_match_the_schema(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    row = sample_row()
    row["wall_time"] = row.pop("wall_time_s")
    with pytest.raises(ValueError, match=r"missing: \['wall_time_s'\], unknown: \['wall_time'\]"):
        store.write_part([row])
    with pytest.raises(ValueError, match="at least one row"):
        store.write_part([])
    assert not list(store.samples_dir.glob("*"))


def test_completed_keys_cover_all_parts(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    assert store.completed_keys() == set()
    store.write_part([sample_row(question_id="q1", seed=0), sample_row(question_id="q1", seed=1)])
    store.write_part([sample_row(question_id="q2", seed=0)])
    assert store.completed_keys() == {("q1", 0), ("q1", 1), ("q2", 0)}


def test_ensure_manifest_writes_once_and_accepts_the_same_config(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    manifest = manifest_for(run_config(checkpoints=(4, 8)))
    store.ensure_manifest(manifest)
    assert store.read_manifest() == {
        **manifest,
        "config": {**manifest["config"], "checkpoints": [4, 8]},
    }
    resumed = {**manifest, "created_at": "2030-01-01T00:00:00+00:00", "command": "dps sample -x"}
    store.ensure_manifest(resumed)  # same config: same run
    assert store.read_manifest()["created_at"] == manifest["created_at"]
    assert store.samples_dir.is_dir()


def test_ensure_manifest_names_the_differing_config_keys(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.ensure_manifest(manifest_for(run_config()))
    with pytest.raises(UserError) as err:
        store.ensure_manifest(manifest_for(run_config(k=4, alpha=2.0)))
    assert err.value.message == (
        f"Output directory {tmp_path / 'run'} holds a different run (differs in: alpha, k)."
    )
    assert err.value.hint == "Use another --out or remove that directory."


def test_open_existing_refuses_a_directory_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        RunStore.open_existing(tmp_path / "nope")
    assert err.value.message == f"No run at {tmp_path / 'nope'}: manifest.json is missing."
    assert err.value.hint


def test_corrupt_manifest_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="manifest.json is not valid JSON"):
        RunStore.open_existing(tmp_path).read_manifest()


def test_scan_refuses_an_empty_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.ensure_manifest(manifest_for(run_config()))
    with pytest.raises(UserError) as err:
        store.scan()
    assert err.value.message == f"Run {tmp_path} has no samples yet."


def _write_with_version(path: Path, version: str) -> None:
    table = pa.Table.from_pylist([sample_row()], schema=SAMPLE_SCHEMA)
    pq.write_table(table.replace_schema_metadata({b"dps_schema_version": version.encode()}), path)


def test_scan_refuses_a_newer_major_schema_version(tmp_path: Path) -> None:
    write_run(tmp_path, [sample_row()])
    newer = tmp_path / "samples" / "part-00001-abcdef01.parquet"
    _write_with_version(newer, "2.0")
    with pytest.raises(UserError) as err:
        RunStore(tmp_path).scan()
    assert err.value.message == (
        f"{newer} was written with run schema 2.0, newer than the {SCHEMA_VERSION} this dps reads."
    )
    assert "Upgrade dps" in str(err.value.hint)
    with pytest.raises(UserError, match="run schema 2.0"):
        RunStore(tmp_path).completed_keys()


def test_scan_accepts_a_newer_minor_version(tmp_path: Path) -> None:
    write_run(tmp_path, [sample_row(seed=5)])
    _write_with_version(tmp_path / "samples" / "part-00001-abcdef01.parquet", "1.7")
    assert RunStore(tmp_path).read_samples().height == 2


def test_a_part_of_schema_1_0_reads_with_a_null_logq_bound(tmp_path: Path) -> None:
    """Parts written before `logq_bound` existed (schema 1.0) still resume, evaluate and mix with new ones."""
    write_run(tmp_path, [sample_row(seed=0, logq_bound=0.25)])
    old = pa.Table.from_pylist([sample_row(seed=1)], schema=SAMPLE_SCHEMA).drop_columns(["logq_bound"])
    pq.write_table(old.replace_schema_metadata({b"dps_schema_version": b"1.0"}),
                   tmp_path / "samples" / "part-00001-old10000.parquet")
    store = RunStore(tmp_path)
    assert sorted(store.completed_keys()) == [("arith-0000", 0), ("arith-0000", 1)]
    frame = store.read_samples().sort("seed")
    assert frame.columns == SAMPLE_SCHEMA.names
    assert frame["logq_bound"].to_list() == [0.25, None]


def test_a_part_of_schema_1_1_reads_with_null_smc_columns(tmp_path: Path) -> None:
    """Parts written before the Power-SMC columns (schema 1.1) read back with nulls there."""
    smc = ["particle_completions", "particle_log_weights", "resamples", "log_z"]
    write_run(tmp_path, [sample_row(seed=0, method="smc", particle_completions=["a", "b"],
                                    particle_log_weights=[0.0, -1.5], resamples=2, log_z=-3.25)])
    old = pa.Table.from_pylist([sample_row(seed=1)], schema=SAMPLE_SCHEMA).drop_columns(smc)
    pq.write_table(old.replace_schema_metadata({b"dps_schema_version": b"1.1"}),
                   tmp_path / "samples" / "part-00001-old11000.parquet")
    frame = RunStore(tmp_path).read_samples().sort("seed")
    assert frame.columns == SAMPLE_SCHEMA.names
    assert frame.select(smc).rows() == [(["a", "b"], [0.0, -1.5], 2, -3.25), (None, None, None, None)]


def test_scan_refuses_a_foreign_parquet_file(tmp_path: Path) -> None:
    write_run(tmp_path, [sample_row()])
    foreign = tmp_path / "samples" / "part-00001-foreign0.parquet"
    pl.DataFrame({"a": [1, 2]}).write_parquet(foreign)
    with pytest.raises(UserError) as err:
        RunStore(tmp_path).scan()
    assert err.value.message == f"{foreign} is not a dps run file: it has no dps schema version."


def test_scan_refuses_a_part_missing_columns(tmp_path: Path) -> None:
    write_run(tmp_path, [sample_row()])
    partial = tmp_path / "samples" / "part-00001-partial0.parquet"
    table = pa.table({"question_id": ["q"]}).replace_schema_metadata(
        {b"dps_schema_version": b"1.0"}
    )
    pq.write_table(table, partial)
    with pytest.raises(
        UserError,
        match=r"part-00001-partial0.parquet is not a dps run file: it lacks columns \['run_id'",
    ):
        RunStore(tmp_path).scan()


def test_scan_refuses_a_corrupted_file(tmp_path: Path) -> None:
    write_run(tmp_path, [sample_row()])
    broken = tmp_path / "samples" / "part-00001-broken00.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(UserError) as err:
        RunStore(tmp_path).read_samples()
    assert err.value.message.startswith(f"{broken} is not a readable Parquet file")


def test_hidden_temporary_files_are_ignored(tmp_path: Path) -> None:
    write_run(tmp_path, [sample_row()])
    (tmp_path / "samples" / ".part-00001-deadbeef.parquet.1234abcd.tmp").write_bytes(b"half")
    assert RunStore(tmp_path).read_samples().height == 1


def test_grades_round_trip_with_fingerprint(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    assert store.read_grades() is None and store.grades_fingerprint() is None
    grades = pl.DataFrame(
        {
            "run_id": ["r", "r"],
            "question_id": ["q1", "q2"],
            "seed": pl.Series([0, 1], dtype=pl.Int32),
            "answer": ["1", None],
            "correct": [True, None],
            "grade_detail": ["", "needs a judge"],
        }
    )
    store.write_grades(grades, samples_fingerprint="abc123")
    assert store.read_grades().equals(grades)  # type: ignore[union-attr]
    assert store.grades_fingerprint() == "abc123"


def test_atomic_write_keeps_old_content_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})

    def failing(tmp: Path) -> None:
        tmp.write_text("partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write_with(target, failing)
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert os.listdir(tmp_path) == ["out.json"]
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"


def test_ensure_manifest_adds_missing_keys_but_never_changes_stored_ones(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    first = manifest_for(run_config())
    del first["model"]
    store.ensure_manifest(first)
    later = {**manifest_for(run_config()), "created_at": "2030-01-01", "model": {"id": "m"}}
    store.ensure_manifest(later)
    stored = store.read_manifest()
    assert stored["model"] == {"id": "m"}
    assert stored["created_at"] == first["created_at"]
