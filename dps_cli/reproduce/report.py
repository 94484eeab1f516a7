"""The report stage of `make reproduce`: evaluate the held-out runs and write the report files.

Reads only what the earlier stages stored (run directories, the reproduction's controller
registry, ``timings.json``), so it runs the same in-process or as the last Slurm job. Writes
``<reports>/reproduce.md``, ``<reports>/passk.png``, ``<reports>/tau_sweep.png`` and
``<reports>/accuracy_tokens.png``.

The table adds the compute-matched voting baselines (`dps_cli.pipeline.vote`: the temperature
run's first N seeds, N chosen so their tokens / question are closest to fixed k's) and marks the
DPS rows whose controller's held-out AUC interval does not lie above 0.5.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from dps_cli.config import EMBEDDED_MODEL
from dps_cli.reproduce.runs import (
    ReproduceOptions,
    controller_name,
    method_name,
    test_runs,
)
from dps_cli.reproduce.table import (
    BEST_OF_ROW,
    CHANCE_MARK,
    MAJORITY_ROW,
    ReproduceReport,
    ResultRow,
    plot_tau_sweep,
    write_markdown,
)

if TYPE_CHECKING:
    from dps_cli.controllers.card import ControllerCard
    from dps_cli.report.results import EvaluationReport, Match, RunSummary

logger = logging.getLogger(__name__)

REPORT_NAME = "reproduce.md"
PASSK_NAME = "passk.png"
TAU_NAME = "tau_sweep.png"
TOKENS_NAME = "accuracy_tokens.png"
TASK_WORDS = {"arith": "a toy integer-arithmetic task", "math500": "MATH500"}


def build_report(options: ReproduceOptions, stage_seconds: Mapping[str, float]) -> ReproduceReport:
    """Evaluate the held-out runs, plot pass@k and the tau sweeps, write reproduce.md."""
    from dps_cli.controllers.artifacts import controller_dir, read_card
    from dps_cli.pipeline.evaluate import evaluate_runs
    from dps_cli.pipeline.passk import passk_table
    from dps_cli.report.plots import plot_accuracy_tokens, plot_passk

    runs = test_runs(options)
    evaluation = evaluate_runs([path for _, path in runs], match=runs[0][1], curves=True,
                               device=options.device)  # fmt: skip
    cards = [
        read_card(controller_dir(controller_name(options.task, kind), options.registry_dir))
        for kind in options.kinds
    ]
    by_method = {method_name(kind): card for kind, card in zip(options.kinds, cards, strict=True)}
    rows = [
        _row(method, summary, by_method.get(method))
        for (method, _), summary in zip(runs, evaluation.runs, strict=True)
    ] + matched_rows(evaluation, runs[0][0])
    reports = options.reports_dir
    reports.mkdir(parents=True, exist_ok=True)
    plot_passk(passk_table([path for _, path in runs]), reports / PASSK_NAME)
    plot_tau_sweep(cards, reports / TAU_NAME)
    plot_accuracy_tokens(evaluation, reports / TOKENS_NAME,
                         title=f"{options.task}, profile {options.profile.name}: held-out runs")  # fmt: skip
    profile = options.profile
    report = ReproduceReport(
        model=evaluation.runs[0].model or options.model_id,
        task=options.task,
        profile=profile.name,
        scale_note=scale_note(options),
        train_questions=profile.train_questions,
        test_questions=profile.test_questions,
        seeds=profile.seeds,
        settings={
            "alpha": f"{profile.alpha:g}",
            "max_new_tokens": profile.max_new_tokens,
            "blocks": profile.blocks,
            "checkpoints": ",".join(str(b) for b in profile.checkpoints),
            "hidden layer": profile.hidden_layer,
            "k ladder": ",".join(str(k) for k in profile.ladder),
            "device": options.device,
        },
        stage_seconds=dict(stage_seconds),
        rows=rows,
        cards=cards,
        passk_png=PASSK_NAME,
        tau_png=TAU_NAME,
        run_dirs=[str(path) for _, path in runs],
        tokens_png=TOKENS_NAME,
    )
    path = write_markdown(report, reports / REPORT_NAME)
    logger.info("wrote %s, %s and %s", path, reports / PASSK_NAME, reports / TAU_NAME)
    return report


def scale_note(options: ReproduceOptions) -> str:
    """One plain sentence on which model, task and scale produced the numbers."""
    profile = options.profile
    scale = (
        f"{profile.train_questions} training and {profile.test_questions} held-out questions x "
        f"{len(profile.seeds)} seeds, {profile.max_new_tokens} new tokens in {profile.blocks} blocks"
    )
    paper_setting = options.model_id == "Qwen/Qwen2.5-Math-7B" and options.task == "math500"
    if profile.name == "paper" and paper_setting:
        return f"These numbers come from the paper's setting: Qwen2.5-Math-7B on MATH500, {scale}."
    model = (
        "the embedded 135M-parameter SmolLM2 model"
        if options.model_id == EMBEDDED_MODEL
        else f"model {options.model_id}"
    )
    task = TASK_WORDS.get(options.task, f"task {options.task}")
    return (
        f"These numbers come from {model} on {task} ({scale}; profile {profile.name}), not from "
        "the paper's setting (Qwen2.5-Math-7B on MATH500, 3072 tokens, 16 blocks, 8 seeds). "
        "They show the pipeline working end to end; compare their shape with the paper's, "
        "not their values."
    )


def matched_rows(evaluation: EvaluationReport, target_method: str) -> list[ResultRow]:
    """The rows of majority vote and best-of-N at the matched N (none without a match)."""
    if not evaluation.voting.matches:
        return []
    match = evaluation.voting.matches[0]
    note = matched_note(match, target_method)
    return [
        ResultRow(method=name, run=match.source, accuracy=result.accuracy,
                  accuracy_lo=result.accuracy_lo, accuracy_hi=result.accuracy_hi,
                  seconds_per_question=result.seconds_per_question, mean_k=None,
                  tokens_per_question=result.tokens_per_question, note=note)
        for name, result in ((MAJORITY_ROW, match.majority), (BEST_OF_ROW, match.best))
    ]  # fmt: skip


def matched_note(match: Match, target_method: str) -> str:
    """Which N was matched and the two token figures."""
    note = (
        f"Matched tokens: N = {match.n} {_samples(match.n)} of {match.source} ({match.source_method_label}) "
        f"cost {match.vote_tokens:.1f} tokens / question, the closest to {target_method}'s "
        f"{match.target_tokens:.1f}."
    )
    if match.short_of_target:
        note += " The vote uses every stored seed and still spends fewer tokens."
    return note


def _samples(n: int) -> str:
    return "sample" if n == 1 else "samples"


def _row(method: str, summary: RunSummary, card: ControllerCard | None = None) -> ResultRow:
    from dps_cli.controllers.card import chance_sentence

    marked = card is not None and not card.metrics.beats_chance
    note = f"{CHANCE_MARK} {chance_sentence(card.name, card.metrics)}" if card is not None and marked else ""
    return ResultRow(
        method=method,
        run=summary.label,
        accuracy=summary.accuracy,
        accuracy_lo=summary.accuracy_lo,
        accuracy_hi=summary.accuracy_hi,
        seconds_per_question=summary.seconds_per_question,
        mean_k=summary.mean_final_k,
        tokens_per_question=summary.tokens_per_question,
        mark=CHANCE_MARK if marked else "",
        note=note or smc_note(method, summary),
    )


def smc_note(method: str, summary: RunSummary) -> str:
    """For the Power-SMC row: the accuracy is the drawn particle's; the weighted vote's too."""
    vote = summary.particle_vote
    if vote is None:
        return ""
    voted = "n/a" if vote.accuracy is None else f"{vote.accuracy * 100:.1f}%"
    return (f"{method}: the accuracy is that of the particle drawn in proportion to the final weights; "
            f"the weighted majority vote over all {vote.n} particles scores {voted}, at the same tokens.")
