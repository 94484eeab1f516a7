"""Slurm scripts without a cluster: the SampleConfig <-> `dps sample` argv round trip, resources.

The round trip is what makes every Slurm script trustworthy: each one runs `dps sample` with
`sample_argv(config)`, and the CLI must parse that argv back to the very same config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app
from dps_cli.config import SampleConfig, format_seeds, parse_seeds, sample_argv
from dps_cli.errors import UserError
from dps_cli.pipeline import sample as sample_module
from dps_cli.pipeline.sample import SampleSummary
from dps_cli.pipeline.slurm import (
    job_script,
    parse_sbatch,
    resources_for_device,
    sample_array_script,
    without_gpu,
)

RUNNER = CliRunner()

#: Every field set away from its default (``command`` is provenance, not a setting).
EVERY_FIELD = SampleConfig(
    bench="math500", out=Path("/tmp/runs/a run"), model="Qwen/Qwen2.5-Math-7B", method="dps",
    k=3, alpha=2.718281828459045, temperature=0.3, max_new_tokens=96, blocks=3,
    checkpoints=(1, 3), hidden_layer=None, controller="my-gbdt", tau=0.123456789,
    registry=Path("reg"), seeds=(0, 1, 2, 5, 9, 3), limit=7, offset=2, shard=(1, 3),
    data=Path("data/math500.json"), device="cuda:1", dtype="bfloat16", batch_size=5, backend="hf",
    run_seed=42, flush_every=3, after_eos="continue", particles=5, smc_chunk=7, smc_ess=0.25, smc_bridge=12,
)  # fmt: skip
CONFIGS = [
    SampleConfig(bench="arith", out=Path("runs/arith-power")),
    EVERY_FIELD,
    SampleConfig(bench="gpqa", out=Path("r"), method="temperature", temperature=0.7,
                 checkpoints=(), hidden_layer=0, seeds=(4,), shard=(0, 1)),  # fmt: skip
    SampleConfig(bench="arith", out=Path("r"), method="greedy", alpha=1.0, seeds=(3, 1)),
    SampleConfig(bench="arith", out=Path("r"), method="smc", particles=4, smc_chunk=8, smc_ess=1.0, smc_bridge=32),
]


def parsed_by_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> SampleConfig:
    """The SampleConfig that `dps sample ARGV` hands to the library."""
    seen: list[SampleConfig] = []

    def fake_sample(config: SampleConfig, progress: Any = None) -> SampleSummary:
        seen.append(config)
        return SampleSummary(str(config.out), 0, 0, 0, 0.0)

    monkeypatch.setattr(sample_module, "sample", fake_sample)
    result = RUNNER.invoke(app, ["sample", *argv])
    assert result.exit_code == 0, result.output
    return seen[0]


def test_every_field_is_set_away_from_its_default() -> None:
    defaults = SampleConfig(bench="arith", out=Path("runs/arith-power"))
    for field in dataclasses.fields(SampleConfig):
        if field.name != "command":
            assert getattr(EVERY_FIELD, field.name) != getattr(defaults, field.name), field.name


@pytest.mark.parametrize("config", CONFIGS, ids=["defaults", "every-field", "temperature", "greedy", "smc"])
def test_sample_argv_round_trips_through_the_cli(
    config: SampleConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Inside an array job an absent --shard would come from the environment: the argv says it.
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert parsed_by_cli(sample_argv(config), monkeypatch) == config


def test_sample_argv_omits_what_a_script_appends() -> None:
    argv = sample_argv(EVERY_FIELD, omit=("--shard", "--seeds"))
    assert "--shard" not in argv and "--seeds" not in argv and "--flush-every" in argv
    with pytest.raises(ValueError, match="--shards"):
        sample_argv(EVERY_FIELD, omit=("--shards",))


@pytest.mark.parametrize("seeds", [(0,), (0, 1, 2, 3), (3, 1), (0, 1, 2, 5, 9, 10, 3), (7, 8)])
def test_format_seeds_inverts_parse_seeds(seeds: tuple[int, ...]) -> None:
    assert parse_seeds(format_seeds(seeds)) == seeds


def test_array_script_runs_the_config_argv(tmp_path: Path) -> None:
    config = SampleConfig(bench="arith", out=tmp_path / "run", device="cpu", dtype="float32",
                          flush_every=2, data=Path("local.json"), seeds=(0, 3))  # fmt: skip
    script = sample_array_script(config, 3, parse_sbatch(["partition=small", "requeue", "gres="]))
    assert "#SBATCH --array=0-2" in script and "#SBATCH --partition=small" in script
    assert "#SBATCH --requeue\n" in script and "gres" not in script
    assert "--dtype float32" in script and "--flush-every 2" in script and "--seeds 0,3" in script
    assert f"--data {Path('local.json').resolve()}" in script
    assert script.endswith('--shard "${SLURM_ARRAY_TASK_ID}/3"\n') and script.count("--shard") == 1
    assert "trap 'echo" in script and "ERR\n" in script and "submit this script again" in script


def test_resources_follow_the_device() -> None:
    assert "gres" not in resources_for_device("cpu")
    assert resources_for_device("cuda:1")["gres"] == resources_for_device("auto")["gres"] == "gpu:1"


def test_job_script_and_gpu_options() -> None:
    script = job_script(["python", "-m", "x"], without_gpu({"gres": "gpu:1", "mem": "4G"}), "rerun")
    assert "#SBATCH --mem=4G" in script and "gres" not in script
    assert script.endswith("python -m x\n") and "RESUME=rerun\n" in script


@pytest.mark.parametrize(
    ("items", "message"),
    [(["=x"], "is not KEY=VALUE"), (["array=0-3"], "is set by dps itself")],
)
def test_parse_sbatch_refuses(items: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_sbatch(items)


def test_cli_passes_sbatch_options(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["sample", "--bench", "arith", "--device", "cpu", "--out", str(tmp_path / "r"),
                                 "--slurm-array", "2", "--sbatch", "partition=cpu", "--sbatch", "--mem=1G"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "#SBATCH --partition=cpu" in result.stdout and "#SBATCH --mem=1G" in result.stdout
    assert "gres" not in result.stdout and "#SBATCH --cpus-per-task=2" in result.stdout
    gpu = RUNNER.invoke(app, ["sample", "--bench", "arith", "--slurm-array", "2", "--out", str(tmp_path / "r")])
    assert "#SBATCH --gres=gpu:1" in gpu.stdout
    bad = RUNNER.invoke(app, ["sample", "--bench", "arith", "--slurm-array", "2", "--sbatch", "array=1"])
    assert bad.exit_code == 2 and "set by dps itself" in bad.stderr


def test_tau_is_resolved_in_one_place_in_process_and_under_slurm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from types import SimpleNamespace

    from dps_cli.controllers import artifacts
    from dps_cli.pipeline.chains import FALLBACK_TAU, with_default_tau
    from dps_cli.reproduce.profiles import SMOKE
    from dps_cli.reproduce.runs import ReproduceOptions, test_configs

    recommended = {"arith-gbdt": 0.3, "arith-mlp-h": None, "arith-mlp-hq": 0.6}
    monkeypatch.setattr(artifacts, "load_controller", lambda name, registry=None: SimpleNamespace(
        card=SimpleNamespace(recommended_tau=recommended[name])))  # fmt: skip
    dps = [c for c in test_configs(ReproduceOptions("arith", SMOKE, out_dir=tmp_path)) if c.method == "dps"]
    # The reproduction leaves tau to `dps sample`, in process and in the Slurm scripts alike.
    assert [c.tau for c in dps] == [None, None, None]
    assert all("--tau" not in sample_argv(c) for c in dps)
    assert [with_default_tau(c).tau for c in dps] == [0.3, FALLBACK_TAU, 0.6]
    assert with_default_tau(dataclasses.replace(dps[0], tau=0.9)).tau == 0.9
