"""Offline AlpacaEval judging with any causal LM dps can load, run through the sampling engine.

For each instruction the judge sees the run's output and the dataset's reference output and is
asked which response is better; we read its log-probabilities of the two verdict letters as the
next token. Both orders are scored and averaged to cancel position bias, so an item's value is
P(run's output wins) in [0, 1]. The win rate is their mean, with a bootstrap interval over items.
This is a cheap local proxy, not the official GPT-4 judge of AlpacaEval.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import numpy as np

from dps_cli.errors import UserError
from dps_cli.report.metrics import bootstrap_ci
from dps_cli.report.results import LocalJudgeResult
from dps_cli.runs.store import RunStore
from dps_cli.sampling.requests import Prefill, PrefillResult
from dps_cli.tasks.prompting import message_prompt

logger = logging.getLogger(__name__)

JUDGE_PROMPT = (
    "You are comparing two responses to the same instruction.\n\n"
    "Instruction:\n{instruction}\n\n"
    "Response A:\n{first}\n\n"
    "Response B:\n{second}\n\n"
    "Which response follows the instruction better and is more helpful? "
    "Answer with a single letter: A or B."
)
VERDICTS = ("A", "B")
JUDGE_BATCH = 8


def verdict_token_ids(tokenizer: Any) -> tuple[int, int]:
    """Token ids of the letters A and B as the first token of an answer."""
    ids = []
    for letter in VERDICTS:
        encoded = tokenizer.encode(letter, add_special_tokens=False)
        if not encoded:
            raise UserError(f"The judge's tokenizer cannot encode the verdict letter {letter!r}.")
        ids.append(int(encoded[0]))
    if ids[0] == ids[1]:
        raise UserError("The judge's tokenizer maps the letters A and B to the same first token.")
    return ids[0], ids[1]


def judge_prompt_ids(tokenizer: Any, instruction: str, first: str, second: str) -> tuple[int, ...]:
    """The judge prompt with the chat template when the tokenizer has one; token ids."""
    text = JUDGE_PROMPT.format(instruction=instruction, first=first, second=second)
    return tuple(message_prompt(tokenizer, text, raw=text + "\nAnswer:")[1])


def _win_probability(result: PrefillResult, run_letter: int) -> float:
    assert result.next_token_logp is not None
    logp = result.next_token_logp.astype(np.float64)
    probs = np.exp(logp - logp.max())
    return float(probs[run_letter] / probs.sum())


def _judge_item(ab: tuple[int, ...], ba: tuple[int, ...], letters: tuple[int, int]
                ) -> Generator[Prefill, PrefillResult, float]:
    """P(run wins): the run's output is A in the first prompt and B in the second."""
    first = yield Prefill(ab, score_tokens=letters)
    second = yield Prefill(ba, score_tokens=letters)
    return 0.5 * (_win_probability(first, 0) + _win_probability(second, 1))


def judge_run(store: RunStore, judge: str, device: str = "auto", dtype: str = "auto") -> LocalJudgeResult:
    """Score the run's outputs (lowest seed per instruction) against the reference outputs."""
    from dps_cli.models.loading import load_model
    from dps_cli.pipeline.grading import load_run_questions
    from dps_cli.sampling.factory import make_backend

    _, questions = load_run_questions(store)
    samples = (store.scan().select("question_id", "seed", "completion").sort("question_id", "seed")
               .unique("question_id", keep="first", maintain_order=True).collect())
    items = [(qid, completion) for qid, _, completion in samples.iter_rows()
             if qid in questions and questions[qid].reference]
    if not items:
        raise UserError(f"Run {store.root} has no AlpacaEval outputs with reference outputs to judge.")
    loaded = load_model(judge, device, dtype)
    letters = verdict_token_ids(loaded.tokenizer)
    drivers = []
    for qid, completion in items:
        question = questions[qid]
        ab = judge_prompt_ids(loaded.tokenizer, question.text, completion, question.reference)
        ba = judge_prompt_ids(loaded.tokenizer, question.text, question.reference, completion)
        drivers.append((qid, _judge_item(ab, ba, letters)))
    wins: dict[str, float] = {}
    # the judge only scores prompts (Prefill with score_tokens): the hf backend does that directly
    make_backend("hf", loaded.model, loaded.eos_token_ids, max_batch=JUDGE_BATCH).run(drivers, wins.__setitem__)
    values = np.array([wins[qid] for qid, _ in items])
    mean, lo, hi = bootstrap_ci(values, rng=np.random.default_rng(0))
    return LocalJudgeResult(loaded.source.model_id, len(values), 100 * mean, 100 * lo, 100 * hi)
