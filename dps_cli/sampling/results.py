"""What a finished chain reports: its completion, its budget history and its checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dps_cli.sampling.requests import Sequence


@dataclass(frozen=True)
class CheckpointRecord:
    """The DPS features of one chain after a checkpoint block (DESIGN §1 table)."""

    block: int
    k: int
    mcmc_perplexity: float
    mcmc_entropy: float
    mcmc_self_confidence: float
    acceptance_ratio: float
    question_time_sec: float
    current_k: int
    hidden: np.ndarray | None
    question_embedding: np.ndarray | None
    p_enough: float | None = None
    escalated: bool = False


@dataclass(frozen=True)
class ChainResult:
    """The outcome of one (question, seed) chain."""

    sequence: Sequence
    completion_ids: np.ndarray  # generated tokens, truncated after the first EOS
    k_schedule: list[int]
    proposals_attempted: int
    proposals_accepted: int
    tokens_generated: int
    stopped_at_eos: bool
    wall_time_s: float
    checkpoints: list[CheckpointRecord]
    question_embedding: np.ndarray | None
    # max over every sequence the chain compared of its summed log q bound (0: log q exact)
    logq_bound: float = 0.0

    @property
    def final_k(self) -> int:
        return self.k_schedule[-1] if self.k_schedule else 0
