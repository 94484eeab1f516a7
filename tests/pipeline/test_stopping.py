"""Stop signals wait for a part to be written; parts are written at most FLUSH_AFTER_S after a sample."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from dps_cli.config import SampleConfig
from dps_cli.errors import Interrupted
from dps_cli.pipeline import writer as writer_module
from dps_cli.pipeline.stopping import (
    EARLY_STOP_MESSAGE,
    LATE_STOP_MESSAGE,
    StopSignals,
    stop_before_start,
    stop_signals,
)
from dps_cli.pipeline.writer import FLUSH_AFTER_S, PartWriter


def test_a_signal_inside_a_deferred_block_is_raised_after_it() -> None:
    steps = []
    with pytest.raises(Interrupted) as stop, stop_signals() as stops:
        with stops.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("the block ran to its end")
        steps.append("not reached")
    assert steps == ["the block ran to its end"]
    assert stop.value.exit_code == 143 and stop.value.signal_name == "SIGTERM"


def test_a_signal_outside_deferred_blocks_raises_at_once_and_handlers_come_back() -> None:
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as stop, stop_signals():
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs between bytecodes
            pass
    assert stop.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is previous


def test_after_ignore_signals_are_only_remembered() -> None:
    with stop_signals() as stops:
        stops.ignore()
        os.kill(os.getpid(), signal.SIGTERM)
        with stops.deferred():
            pass
    assert stops.pending == signal.SIGTERM


def _spin() -> None:
    """Run some bytecode, between which Python calls signal handlers."""
    for _ in range(1000):
        pass


def test_a_stop_before_sampling_starts_says_nothing_was_drawn() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as stop, stop_before_start():
        os.kill(os.getpid(), signal.SIGTERM)
        _spin()
    assert stop.value.message == EARLY_STOP_MESSAGE.format(signal="SIGTERM")
    assert signal.getsignal(signal.SIGTERM) is previous


def test_a_stop_after_sampling_ended_is_raised_at_the_end_and_does_not_claim_nothing_was_drawn() -> None:
    steps = []
    with pytest.raises(Interrupted) as stop, stop_before_start():
        with stop_signals():
            pass
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. while the lock is released
        _spin()
        steps.append("the rest of the block ran")
    assert steps == ["the rest of the block ran"]
    assert stop.value.message == LATE_STOP_MESSAGE.format(signal="SIGTERM")
    assert stop.value.exit_code == 143


def test_a_second_stop_does_not_replace_the_first_on_its_way_up() -> None:
    with pytest.raises(Interrupted) as stop, stop_before_start():
        try:
            with stop_signals():
                raise Interrupted(signal.SIGINT, "the samples finished in this session are stored")
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the first stop unwinds
            _spin()
    assert stop.value.message == "the samples finished in this session are stored"
    assert stop.value.exit_code == 130


class _Store:
    """Records parts instead of writing them."""

    samples_dir = Path("samples")

    def __init__(self) -> None:
        self.parts: list[int] = []

    def write_part(self, rows: list[Any], tag: str | None = None) -> None:
        self.parts.append(len(rows))


def test_waiting_rows_are_written_once_the_oldest_is_flush_after_s_old(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]

    class Clock:
        @staticmethod
        def monotonic() -> float:
            return now[0]

    monkeypatch.setattr(writer_module, "time", Clock)
    store = _Store()
    part_writer = PartWriter(store, SampleConfig(bench="arith", out=Path("run"), flush_every=16), None, None, "m",  # type: ignore[arg-type]
                             StopSignals())
    part_writer.rows, part_writer.oldest = [{"row": 1}, {"row": 2}], now[0]
    now[0] += FLUSH_AFTER_S - 0.1
    part_writer.flush_if_due()
    assert store.parts == []
    now[0] += 0.1
    part_writer.flush_if_due()
    assert store.parts == [2] and part_writer.written == 2 and part_writer.oldest is None
