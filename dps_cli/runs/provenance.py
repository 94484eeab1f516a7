"""Versions and git revision recorded in every manifest, so a run says what produced it."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

import dps_cli

PACKAGES = ("torch", "transformers", "polars", "pyarrow", "catboost", "numpy")


def provenance() -> dict[str, Any]:
    """``versions`` (dps, Python and key packages) and ``git_sha`` of the dps checkout, if any."""
    versions: dict[str, str | None] = {"dps": dps_cli.__version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"versions": versions, "git_sha": git_sha()}


@functools.cache
def git_sha() -> str | None:
    """The dps checkout's HEAD when this process first asks, i.e. the code it loaded.

    Cached because a long `dps reproduce` writes manifests for hours: a checkout that moves
    under it must not be recorded as the code that produced runs it keeps writing.
    """
    root = Path(dps_cli.__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
