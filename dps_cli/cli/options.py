"""Options shared by several commands, declared once; defaults come from the config objects."""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from dps_cli.config import BACKENDS, DEFAULT_BATCH, EMBEDDED_MODEL, MAX_BATCH_SIZE

MODEL_PANEL = "Model"
METHOD_PANEL = "Method"
RUN_PANEL = "Run"

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        help=f"Hugging Face id, local directory, .gguf file, or the embedded {EMBEDDED_MODEL!r}.",
        rich_help_panel=MODEL_PANEL,
    ),
]
DeviceOption = Annotated[
    str, typer.Option("--device", help="auto | cpu | cuda[:N] | mps.", rich_help_panel=RUN_PANEL)
]
BatchSizeOption = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        help="Chains decoded together (default: "
        + ", ".join(f"{size} on {device}" for device, size in DEFAULT_BATCH.items())
        + f"; at most {MAX_BATCH_SIZE}).",
        rich_help_panel=RUN_PANEL,
        show_default=False,
    ),
]
BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        help=f"Sampling backend: {' | '.join(BACKENDS)} (auto: vllm when installed and CUDA is "
        "present, else hf).",
        rich_help_panel=RUN_PANEL,
    ),
]
RegistryOption = Annotated[
    Path | None,
    typer.Option(
        "--registry",
        help="Controller registry directory "
        "(default: $DPS_HOME/controllers, else the user data dir).",
        show_default=False,
    ),
]
SbatchOption = Annotated[
    list[str] | None,
    typer.Option(
        "--sbatch",
        metavar="KEY=VALUE",
        help="An #SBATCH option for the Slurm job(s), e.g. partition=cpu (repeatable; KEY= drops "
        "a default such as gres=).",
        rich_help_panel=RUN_PANEL,
        show_default=False,
    ),
]



def config_defaults(config: type) -> dict[str, Any]:
    """Field name -> default of the dataclass ``config``: CLI defaults are read from here."""
    return {field.name: field.default for field in fields(config) if field.default is not MISSING}
