"""One writer per shard, leftovers of killed writers, duplicate rows and corrupt parts (no model)."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dps_cli.errors import UserError
from dps_cli.runs.atomic import storage_error
from dps_cli.runs.parts import CorruptPart
from dps_cli.runs.provenance import git_sha, provenance
from dps_cli.runs.store import RunStore
from tests.factories import sample_row, write_run


def _store(tmp_path: Path) -> RunStore:
    write_run(tmp_path / "run", [sample_row(seed=0)])
    return RunStore(tmp_path / "run")


def test_a_second_writer_of_the_same_shard_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.writing((0, 1), "dps sample first"):
        with pytest.raises(UserError) as err:
            with RunStore(store.root).writing((0, 1), "dps sample second"):
                pass
    assert err.value.message.startswith(f"Another dps sample is already writing shard 0/1 of {store.root} (pid {os.getpid()} on ")
    with store.writing((0, 1), "dps sample third"):  # released on exit
        pass


def test_other_shards_write_side_by_side_and_each_writer_is_recorded(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.writing((0, 2), "dps sample --shard 0/2"), RunStore(store.root).writing((1, 2), "dps sample --shard 1/2"):
        pass
    writers = store.read_manifest()["writers"]
    assert [(w["shard"], w["command"]) for w in writers] == [("0/2", "dps sample --shard 0/2"), ("1/2", "dps sample --shard 1/2")]
    assert all(w["pid"] == os.getpid() and w["host"] and w["started_at"] for w in writers)
    assert all(w["git_sha"] == provenance()["git_sha"] for w in writers)


def test_the_git_revision_is_the_one_the_process_started_with(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long `dps reproduce` keeps recording the revision it loaded, not a checkout that moved."""
    first = git_sha()

    def moved(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 0, stdout="f" * 40 + "\n", stderr="")

    monkeypatch.setattr(subprocess, "run", moved)
    assert git_sha() == first
    git_sha.cache_clear()
    try:
        assert git_sha() == "f" * 40  # the stub is what a fresh process would read
    finally:
        git_sha.cache_clear()


def test_a_writer_with_an_overlapping_sharding_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.writing((1, 2), "dps sample --shard 1/2"):
        with pytest.raises(UserError, match=r"with --shard \?/2 \(pid .*whose questions overlap --shard 0/1"):
            with RunStore(store.root).writing((0, 1), "dps sample"):
                pass
    with store.writing((0, 1), "dps sample"):
        pass


HOLD_LOCK = """
import sys, time
from pathlib import Path
from dps_cli.runs.store import RunStore
with RunStore(Path(sys.argv[1])).writing((0, 1), "holder"):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    store = _store(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(store.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"pid {holder.pid} on "):
            with store.writing((0, 1), "dps sample"):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with store.writing((0, 1), "dps sample"):  # no stale lock to remove by hand
        pass


def test_temporary_parts_of_killed_writers_are_removed_on_start(tmp_path: Path) -> None:
    store = _store(tmp_path)
    names = {
        "mine": ".part-00007-deadbeef.parquet.s0of2.0badcafe.tmp",
        "live": ".part-00008-deadbeef.parquet.s1of2.0badcafe.tmp",
        "untagged": ".part-00009-deadbeef.parquet.0badcafe.tmp",
    }
    with store.writing((1, 2), "live writer of shard 1/2"):
        for name in names.values():
            (store.samples_dir / name).write_bytes(b"")
        with RunStore(store.root).writing((0, 2), "restart of shard 0/2"):
            left = {p.name for p in store.samples_dir.glob(".part-*.tmp")}
            assert left == {names["live"], names["untagged"]}  # another writer may own those
    with store.writing((0, 2), "restart of shard 0/2, alone"):
        assert not list(store.samples_dir.glob(".part-*.tmp"))
    assert store.read_samples().height == 1


def test_readers_drop_duplicate_rows_and_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [sample_row(seed=0, completion="first"), sample_row(seed=1), sample_row(seed=0, completion="second")]
    write_run(tmp_path / "run", rows, rows_per_part=1)
    store = RunStore(tmp_path / "run")
    with caplog.at_level(logging.WARNING):
        frame = store.read_samples()
        assert store.completed_keys() == {("arith-0000", 0), ("arith-0000", 1)}
    assert frame.sort("seed")["completion"].to_list() == ["first", "The answer is 2."]
    warnings = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert len(warnings) == 1 and "holds 1 duplicate (question, seed) rows" in warnings[0]


def _damage_a_data_page(part: Path) -> None:
    """Flip bytes between the leading magic and the footer: the footer stays readable."""
    data = bytearray(part.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    middle = (4 + len(data) - 8 - footer) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    part.write_bytes(bytes(data))
    pq.read_schema(part)  # the footer still reads: only reading the data can tell


def test_a_corrupt_part_is_refused_by_readers_and_moved_aside_by_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_run(tmp_path / "run", [sample_row(seed=0), sample_row(seed=1)], rows_per_part=1)
    store = RunStore(tmp_path / "run")
    broken = sorted(store.samples_dir.glob("part-*.parquet"))[1]
    _damage_a_data_page(broken)
    with pytest.raises(CorruptPart, match=f"{broken} is corrupt"):
        RunStore(store.root).scan()
    with caplog.at_level(logging.WARNING):
        assert RunStore(store.root).completed_keys(repair=True) == {("arith-0000", 0)}
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"{broken} is corrupt (")
    assert warning.endswith(f"Moved it aside to {broken.name}.corrupt; its samples are drawn again.")
    assert (store.samples_dir / f"{broken.name}.corrupt").is_file()  # nothing is deleted
    assert RunStore(store.root).read_samples()["seed"].to_list() == [0]


def test_out_naming_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(UserError, match="notes.txt is a file, not a run directory"):
        RunStore(path).ensure_manifest({"config": {}})
    with pytest.raises(UserError, match="notes.txt is a file, not a run directory"):
        RunStore.open_existing(path)
    with pytest.raises(UserError, match="Cannot create the run directory .*notes.txt/run: Not a directory"):
        RunStore(path / "run").ensure_manifest({"config": {}})
    assert path.read_text() == "hello"


@pytest.mark.parametrize("content", ["[1, 2]", '{"config": "power"}'])
def test_a_manifest_of_the_wrong_shape_is_named(tmp_path: Path, content: str) -> None:
    store = _store(tmp_path)
    store.manifest_path.write_text(content)
    with pytest.raises(UserError, match=f"Manifest {store.manifest_path} is not a"):
        store.read_manifest()
    json.loads(content)


def test_storage_errors_become_one_sentence() -> None:
    error = storage_error(OSError(errno.ENOSPC, "No space left on device"), "write 4 finished samples to runs/x")
    assert error is not None and error.message == "Could not write 4 finished samples to runs/x: no space left on the device."
    assert storage_error(OSError(errno.EIO, "I/O error"), "write") is None  # not the user's to fix
