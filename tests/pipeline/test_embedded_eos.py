"""No completion of a power or DPS run on the embedded model is cut short (slow: the real model).

Before the exact-EOS sampler, 2 of 12 completions of this very command ended mid-answer: an MH
proposal replaced the final EOS and nothing could lengthen the state again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app

RUNNER = CliRunner()
pytestmark = pytest.mark.slow
MAX_NEW = 48


def whole(frame: pl.DataFrame) -> bool:
    """Every completion ends with EOS or has exactly MAX_NEW tokens."""
    return bool(((frame["stopped_at_eos"]) | (frame["tokens_kept"] == MAX_NEW)).all())


def test_power_run_on_the_embedded_model_has_no_cut_short_completion(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = RUNNER.invoke(app, ["sample", "--bench", "arith", "--method", "power", "--k", "2",
                                 "--max-new-tokens", str(MAX_NEW), "--blocks", "4", "--seeds", "0-1",
                                 "--limit", "3", "--hidden-layer", "none", "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(out / "samples" / "*.parquet")
    assert frame.height == 6 and whole(frame)
    assert frame["stopped_at_eos"].any()  # the test exercises completions that end


def test_dps_chains_on_the_embedded_model_have_no_cut_short_completion() -> None:
    """DPS with --after-eos continue: ended states keep being proposed to, up to each block's length."""
    from dps_cli.models.loading import load_model
    from dps_cli.sampling.engine import Engine
    from dps_cli.sampling.policies import DynamicK
    from dps_cli.sampling.power import PowerSettings, power_chain
    from dps_cli.tasks import get_task
    from dps_cli.tasks.prompting import build_prompt

    loaded = load_model("smollm2-135m", device="cpu")
    task = get_task("arith")
    prompts = [tuple(build_prompt(loaded.tokenizer, task, q, None)[1]) for q in task.load(None)[:3]]
    settings = PowerSettings(alpha=4.0, max_new_tokens=MAX_NEW, blocks=4, checkpoints=(1, 3),
                             eos_token_ids=loaded.eos_token_ids, after_eos="continue")
    drivers = [(i, power_chain(p, settings, DynamicK(tau=0.5), np.random.default_rng(i)))
               for i, p in enumerate(prompts)]
    results: dict[int, object] = {}
    engine = Engine(loaded.model, loaded.eos_token_ids, max_batch=8,
                    decider=lambda records: np.full(len(records), 0.2))  # escalate: k 2, 4, 4, 6
    engine.run(drivers, results.__setitem__)
    assert len(results) == 3
    for result in results.values():
        assert result.stopped_at_eos or len(result.completion_ids) == MAX_NEW  # type: ignore[attr-defined]
