"""The CLI's defaults are the config objects' defaults, and its choices are the registries'."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dps_cli.cli.app import app
from dps_cli.config import DEFAULT_BATCH, EMBEDDED_MODEL, SampleConfig, format_seeds
from dps_cli.controllers.kinds import CONTROLLER_KINDS
from dps_cli.reproduce.profiles import PROFILES
from dps_cli.reproduce.runs import DEFAULT_PROFILE, DEFAULT_TASK, STAGES

RUNNER = CliRunner()
#: `dps sample` option -> how SampleConfig's default of that field is shown in --help.
SHOWN = {
    "--model": lambda c: c.model,
    "--method": lambda c: c.method,
    "--k": lambda c: str(c.k),
    "--alpha": lambda c: str(c.alpha),
    "--max-new-tokens": lambda c: str(c.max_new_tokens),
    "--blocks": lambda c: str(c.blocks),
    "--after-eos": lambda c: c.after_eos,
    "--checkpoints": lambda c: ",".join(map(str, c.checkpoints)),
    "--hidden-layer": lambda c: str(c.hidden_layer),
    "--seeds": lambda c: format_seeds(c.seeds),
    "--offset": lambda c: str(c.offset),
    "--device": lambda c: c.device,
    "--dtype": lambda c: c.dtype,
    "--backend": lambda c: c.backend,
    "--flush-every": lambda c: str(c.flush_every),
    "--run-seed": lambda c: str(c.run_seed),
    "--particles": lambda c: str(c.particles),
    "--smc-chunk": lambda c: str(c.smc_chunk),
    "--smc-ess": lambda c: str(c.smc_ess),
    "--smc-bridge": lambda c: str(c.smc_bridge),
}


def help_text(*command: str) -> str:
    """The --help of ``command`` on one wide line per row, without rich's box drawing."""
    result = RUNNER.invoke(app, [*command, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return re.sub(r"[ │╭╮╰╯─]+", " ", result.output)


def option_default(text: str, option: str) -> str:
    """The ``[default: ...]`` shown on ``option``'s row."""
    match = re.search(rf"(?:^|\s){re.escape(option)}\s.*?\[default: ([^\]]+)\]", text)
    assert match, f"{option} shows no default"
    return match.group(1)


@pytest.mark.parametrize("option", sorted(SHOWN))
def test_sample_help_shows_the_configs_defaults(option: str) -> None:
    config = SampleConfig(bench="arith", out=Path("."))
    assert option_default(help_text("sample"), option) == SHOWN[option](config)


def test_sample_help_names_the_embedded_model_and_the_batch_defaults() -> None:
    text = help_text("sample")
    assert f"embedded '{EMBEDDED_MODEL}'" in text
    for device, size in DEFAULT_BATCH.items():
        assert f"{size} on {device}" in text


def test_reproduce_help_shows_its_defaults_and_choices() -> None:
    text = help_text("reproduce")
    assert option_default(text, "--task") == DEFAULT_TASK
    assert option_default(text, "--profile") == DEFAULT_PROFILE
    assert "|".join(PROFILES) in text and "|".join(("all", *STAGES)) in text


def test_train_controller_choices_are_the_registry() -> None:
    assert "|".join(CONTROLLER_KINDS.names()) in help_text("train-controller")
