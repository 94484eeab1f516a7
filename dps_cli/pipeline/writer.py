"""Buffers the rows of finished chains and writes them to the run store as atomic Parquet parts.

A part is written once ``flush_every`` rows wait, or once the oldest waiting row is
`FLUSH_AFTER_S` seconds old (checked after every engine step), whichever comes first; SIGTERM,
SIGINT and errors flush whatever waits. So only SIGKILL (or a power cut) can lose finished
samples: those of the last `FLUSH_AFTER_S` seconds, at most ``flush_every`` of them.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from dps_cli.config import SampleConfig
from dps_cli.pipeline.stopping import StopSignals
from dps_cli.runs.atomic import storage_error
from dps_cli.runs.store import RunStore
from dps_cli.sampling.results import ChainResult
from dps_cli.sampling.smc import SMCResult
from dps_cli.tasks.base import Task

if TYPE_CHECKING:
    from dps_cli.pipeline.plan import ChainPlan

logger = logging.getLogger(__name__)

FLUSH_AFTER_S = 10.0  # the most finished work a SIGKILL can cost, in seconds of finished samples


class PartWriter:
    """Turns finished chains into rows and writes them in parts; see the module docstring."""

    def __init__(self, store: RunStore, config: SampleConfig, tokenizer: Any, task: Task, model_id: str,
                 stops: StopSignals, tag: str | None = None) -> None:  # fmt: skip
        self.store, self.config, self.tokenizer, self.task = store, config, tokenizer, task
        self.model_id, self.stops, self.tag = model_id, stops, tag
        self.rows: list[dict[str, Any]] = []
        self.oldest: float | None = None  # monotonic time the first waiting row was added
        self.written = 0
        self.failed = False

    def add(self, plan: ChainPlan, result: ChainResult) -> None:
        """Buffer one finished chain as a row (a stop signal waits until it is buffered)."""
        from dps_cli.pipeline.rows import sample_row

        with self.stops.deferred():
            completion = self.decode(result.completion_ids)
            answer = self.task.extract_answer(completion, plan.question, plan.choice_order)
            particles = [self.decode(ids) for ids in result.particles] if isinstance(result, SMCResult) else None
            if not self.rows:
                self.oldest = time.monotonic()
            self.rows.append(sample_row(self.config, plan, result, completion, answer, self.model_id, particles))
        self.flush_if_due()

    def decode(self, ids: Any) -> str:
        """A completion's text, special tokens (EOS) left out."""
        return str(self.tokenizer.decode(ids.tolist(), skip_special_tokens=True))

    def flush_if_due(self) -> None:
        """Write the waiting rows if there are ``flush_every`` of them or the oldest is old."""
        if not self.rows or self.oldest is None:
            return
        if len(self.rows) >= self.config.flush_every or time.monotonic() - self.oldest >= FLUSH_AFTER_S:
            self.flush()

    def flush(self) -> None:
        """Write every waiting row as one part; a disk that is full is a one-sentence UserError."""
        if not self.rows or self.failed:
            return
        try:
            with self.stops.deferred():
                self.store.write_part(self.rows, tag=self.tag)
                self.written += len(self.rows)
                self.rows, self.oldest = [], None
        except OSError as err:
            self.failed = True  # the same write would fail again on the way out
            error = storage_error(
                err,
                f"write {len(self.rows)} finished samples to {self.store.samples_dir} "
                f"({self.written} samples of this session are stored there in complete parts)",
            )
            if error is None:
                raise
            raise error from None

    def flush_after_error(self) -> None:
        """Keep finished work when sampling failed; never hide the original error."""
        try:
            self.flush()
        except Exception as err:  # reported, then the original error goes on
            logger.warning("Could not write %d finished samples: %s", len(self.rows), err)
