"""AlpacaEval runs: export the official model-outputs JSON and, when possible, run the judge.

AlpacaEval has no local grader: a judge model compares each output with a reference. `dps`
writes ``runs/<run>/alpaca_eval_outputs.json`` (``[{"instruction", "output", "generator",
"dataset"}]``, one output per instruction: the lowest seed's) and runs
``alpaca_eval --model_outputs FILE --output_path runs/<run>/alpaca_eval`` when the
``alpaca_eval`` package and a judge (``OPENAI_API_KEY`` or ``OPENAI_CLIENT_CONFIG_PATH``) are
available. Otherwise the report prints that command; once the user has run it, the next
`dps evaluate` reads the win rates from its ``leaderboard.csv``.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import shlex
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

from dps_cli.pipeline.judge import judge_run
from dps_cli.report.results import AlpacaResult
from dps_cli.runs.atomic import atomic_write_bytes
from dps_cli.runs.store import RunStore

logger = logging.getLogger(__name__)

OUTPUTS_NAME = "alpaca_eval_outputs.json"
JUDGE_DIR = "alpaca_eval"
LEADERBOARD_NAME = "leaderboard.csv"
JUDGE_ENV_VARS = ("OPENAI_API_KEY", "OPENAI_CLIENT_CONFIG_PATH")
DEFAULT_DATASET = "alpaca_eval"


def alpaca_verdict(
    run_dir: Path, label: str, rejudge: bool, judge: str | None, judge_device: str
) -> AlpacaResult:
    """The external judge ``alpaca_eval`` of tasks that name it (`Task.external_judge`), and the
    offline judge ``judge`` (a model spec, `dps_cli.pipeline.judge`) when one is given."""
    store = RunStore.open_existing(run_dir)
    result = judge_alpaca_run(store, label, rejudge=rejudge)
    if judge is not None:
        result = replace(result, local_judge=judge_run(store, judge, device=judge_device))
    return result


def judge_alpaca_run(store: RunStore, generator: str, rejudge: bool = False) -> AlpacaResult:
    """Export the run's outputs, reuse or obtain the judge's verdict, and say what happened."""
    outputs = write_alpaca_outputs(store, generator)
    out_dir = store.root / JUDGE_DIR
    argv = ["alpaca_eval", "--model_outputs", str(outputs), "--output_path", str(out_dir)]
    command = shlex.join(argv)
    leaderboard = out_dir / LEADERBOARD_NAME
    fresh = leaderboard.exists() and leaderboard.stat().st_mtime >= outputs.stat().st_mtime
    if not (fresh and not rejudge):
        executable = judge_executable()
        if executable is None:
            note = f"Not judged: run `{command}` (needs alpaca_eval and OPENAI_API_KEY)."
            return AlpacaResult(str(outputs), command, None, None, note)
        result = subprocess.run([executable, *argv[1:]], capture_output=True, text=True)
        if result.returncode != 0:
            logger.warning("alpaca_eval failed:\n%s", result.stderr[-4000:])
            note = f"alpaca_eval exited with {result.returncode}; rerun `{command}`."
            return AlpacaResult(str(outputs), command, None, None, note)
    win_rate, lc_win_rate = read_leaderboard(leaderboard, generator)
    note = f"Judged by alpaca_eval ({leaderboard})."
    return AlpacaResult(str(outputs), command, win_rate, lc_win_rate, note)


def write_alpaca_outputs(store: RunStore, generator: str) -> Path:
    """Write the model-outputs JSON (only when its content changed, so its mtime means news)."""
    from dps_cli.pipeline.grading import load_run_questions

    _, questions = load_run_questions(store)
    samples = (
        store.scan()
        .select("question_id", "seed", "completion")
        .sort("question_id", "seed")
        .unique("question_id", keep="first", maintain_order=True)
        .collect()
    )
    records = [
        {
            "instruction": questions[qid].text if qid in questions else "",
            "output": completion,
            "generator": generator,
            "dataset": questions[qid].extra.get("dataset", DEFAULT_DATASET)
            if qid in questions
            else DEFAULT_DATASET,
        }
        for qid, _, completion in samples.iter_rows()
    ]
    data = (json.dumps(records, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    path = store.root / OUTPUTS_NAME
    if not path.exists() or path.read_bytes() != data:
        atomic_write_bytes(path, data)
    return path


def judge_executable() -> str | None:
    """The ``alpaca_eval`` command if the package and a judge's credentials are present."""
    if importlib.util.find_spec("alpaca_eval") is None:
        return None
    if not any(os.environ.get(name) for name in JUDGE_ENV_VARS):
        return None
    return shutil.which("alpaca_eval")


def read_leaderboard(path: Path, generator: str) -> tuple[float | None, float | None]:
    """(win rate, length-controlled win rate) of ``generator`` from alpaca_eval's CSV."""
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            name = row.get("") or row.get("Unnamed: 0") or next(iter(row.values()), "")
            if name == generator:
                return _number(row.get("win_rate")), _number(row.get("length_controlled_winrate"))
    return None, None


def _number(text: str | None) -> float | None:
    """A float from a CSV cell, None for an empty cell."""
    return float(text) if text not in (None, "") else None
