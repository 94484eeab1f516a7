"""The report stage of `make reproduce`: evaluate the held-out runs and write the report files.

Reads only what the earlier stages stored (run directories, the reproduction's controller
registry, ``timings.json``), so it runs the same in-process or as the last Slurm job. Writes
``<reports>/reproduce.md``, ``<reports>/passk.png`` and ``<reports>/tau_sweep.png``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from dps_cli.pipeline.profiles import CONTROLLER_KINDS
from dps_cli.report.reproduce import ReproduceReport, ResultRow, plot_tau_sweep, write_markdown

if TYPE_CHECKING:
    from dps_cli.pipeline.evaluate import RunSummary
    from dps_cli.pipeline.reproduce import ReproduceOptions

logger = logging.getLogger(__name__)

REPORT_NAME = "reproduce.md"
PASSK_NAME = "passk.png"
TAU_NAME = "tau_sweep.png"
EMBEDDED_ALIAS = "smollm2-135m"
TASK_WORDS = {"arith": "a toy integer-arithmetic task", "math500": "MATH500"}


def build_report(options: ReproduceOptions, stage_seconds: Mapping[str, float]) -> ReproduceReport:
    """Evaluate the held-out runs, plot pass@k and the tau sweeps, write reproduce.md."""
    from dps_cli.controllers.artifacts import controller_dir, read_card
    from dps_cli.pipeline.evaluate import evaluate_runs
    from dps_cli.pipeline.passk import passk_table
    from dps_cli.pipeline.reproduce import controller_name, test_runs
    from dps_cli.report.plots import plot_passk

    runs = test_runs(options)
    evaluation = evaluate_runs([path for _, path in runs])
    rows = [
        _row(method, summary) for (method, _), summary in zip(runs, evaluation.runs, strict=True)
    ]
    reports = options.reports_dir
    reports.mkdir(parents=True, exist_ok=True)
    plot_passk(passk_table([path for _, path in runs]), reports / PASSK_NAME)
    cards = [
        read_card(controller_dir(controller_name(options.task, kind), options.registry_dir))
        for kind in CONTROLLER_KINDS
    ]
    plot_tau_sweep(cards, reports / TAU_NAME)
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
        if options.model_id == EMBEDDED_ALIAS
        else f"model {options.model_id}"
    )
    task = TASK_WORDS.get(options.task, f"task {options.task}")
    return (
        f"These numbers come from {model} on {task} ({scale}; profile {profile.name}), not from "
        "the paper's setting (Qwen2.5-Math-7B on MATH500, 3072 tokens, 16 blocks, 8 seeds). "
        "They show the pipeline working end to end; compare their shape with the paper's, "
        "not their values."
    )


def _row(method: str, summary: RunSummary) -> ResultRow:
    return ResultRow(
        method=method,
        run=summary.label,
        accuracy=summary.accuracy,
        accuracy_lo=summary.accuracy_lo,
        accuracy_hi=summary.accuracy_hi,
        seconds_per_question=summary.seconds_per_question,
        mean_k=summary.mean_final_k,
    )
