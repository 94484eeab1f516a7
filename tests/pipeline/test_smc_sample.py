"""`dps sample --method smc` on a tiny model: rows with every particle, reproducible, evaluable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from dps_cli.config import SampleConfig
from dps_cli.pipeline.sample import sample
from dps_cli.runs.schema import SAMPLE_SCHEMA
from dps_cli.runs.store import RunStore

PARTICLE_COLUMNS = ["question_id", "seed", "completion", "particle_completions", "particle_log_weights",
                    "resamples", "log_z", "tokens_generated"]


def smc_config(model: Path, out: Path, **overrides) -> SampleConfig:  # type: ignore[no-untyped-def]
    settings = dict(bench="arith", out=out, model=str(model), method="smc", particles=3, smc_chunk=4,
                    smc_ess=1.0, max_new_tokens=12, seeds=(0, 1), limit=2, batch_size=4, flush_every=1)
    settings.update(overrides)
    return SampleConfig(**settings)  # type: ignore[arg-type]


def particle_rows(out: Path) -> pl.DataFrame:
    return RunStore(out).read_samples().select(PARTICLE_COLUMNS).sort("question_id", "seed")


def test_smc_rows_store_every_particle(tiny_model_dir: Path, tmp_path: Path) -> None:
    summary = sample(smc_config(tiny_model_dir, tmp_path / "run"))
    assert (summary.written, summary.total) == (4, 4)
    frame = RunStore(tmp_path / "run").read_samples()
    assert frame.columns == SAMPLE_SCHEMA.names
    for row in frame.iter_rows(named=True):
        assert row["method"] == "smc" and row["alpha"] == 4.0 and row["temperature"] == 0.25
        assert row["k_schedule"] == [] and row["final_k"] is None and row["blocks"] is None
        assert row["hidden_layer"] is None and row["checkpoints"] == []
        assert len(row["particle_completions"]) == len(row["particle_log_weights"]) == 3
        assert row["completion"] in row["particle_completions"]  # the drawn particle
        assert np.isfinite(row["log_z"]) and row["log_z"] <= 0  # log of an estimate of sum p^alpha <= 1
        assert 0 <= row["resamples"] <= 3  # at most one per round of 4 tokens
        # every particle's tokens count: at least the drawn one's, at most N full completions
        assert row["tokens_kept"] <= row["tokens_generated"] <= 3 * 12
    config = RunStore(tmp_path / "run").read_manifest()["config"]
    assert (config["particles"], config["smc_chunk"], config["smc_ess"], config["smc_bridge"]) == (3, 4, 1.0, 0)
    assert config["k"] is None and config["blocks"] is None


def test_smc_rows_do_not_depend_on_the_batch(tiny_model_dir: Path, tmp_path: Path) -> None:
    sample(smc_config(tiny_model_dir, tmp_path / "four"))
    sample(smc_config(tiny_model_dir, tmp_path / "wide", batch_size=12))
    four, wide = particle_rows(tmp_path / "four"), particle_rows(tmp_path / "wide")
    floats = ["log_z", "particle_log_weights"]  # float32 sums differ in the last bits between batch shapes
    assert four.drop(floats).equals(wide.drop(floats))
    np.testing.assert_allclose(four["log_z"].to_numpy(), wide["log_z"].to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(np.concatenate(four["particle_log_weights"].to_list()),
                               np.concatenate(wide["particle_log_weights"].to_list()), atol=1e-4)
