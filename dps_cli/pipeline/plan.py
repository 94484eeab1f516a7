"""One chain to run: its question, sample seed, tokenized prompt and its own random stream."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from dps_cli.tasks.base import Question, Task
from dps_cli.tasks.prompting import build_prompt


@dataclass(frozen=True)
class ChainPlan:
    """One (question, seed) chain to run, with its prompt already tokenized."""

    question: Question
    seed: int
    choice_order: tuple[int, ...] | None
    prompt_text: str
    prompt_ids: tuple[int, ...]


def plan_chain(task: Task, tokenizer: Any, question: Question, seed: int) -> ChainPlan:
    """The chain of (``question``, ``seed``): the task's choice order and the built prompt."""
    order = task.choice_order(question, seed)
    text, ids = build_prompt(tokenizer, task, question, order)
    return ChainPlan(question, seed, order, text, tuple(int(i) for i in ids))


def chain_rng(run_seed: int, question_id: str, seed: int) -> np.random.Generator:
    """The chain's own random stream, fixed by (run seed, question, sample seed) alone."""
    digest = int.from_bytes(hashlib.sha256(question_id.encode()).digest()[:8], "little")
    return np.random.default_rng([run_seed, digest, seed])
