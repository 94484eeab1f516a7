"""Where dps keeps files outside a run directory: model cache, controller registry, data.

``DPS_HOME`` moves everything (cache and controllers) under one directory; otherwise the
platform's user cache and data directories are used. ``DPS_DATA_DIR`` points at local copies of
benchmark files for offline use.
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir, user_data_dir

APP_NAME = "dps"


def home_dir() -> Path | None:
    """The ``DPS_HOME`` override, if set."""
    value = os.environ.get("DPS_HOME")
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Directory for re-creatable files (converted model weights, downloaded wheels)."""
    home = home_dir()
    return home / "cache" if home else Path(user_cache_dir(APP_NAME))


def data_dir() -> Path:
    """Directory for files the user made and wants to keep (trained controllers)."""
    home = home_dir()
    return home if home else Path(user_data_dir(APP_NAME))


def controllers_dir() -> Path:
    """Default controller registry directory."""
    return data_dir() / "controllers"


def benchmark_data_dir() -> Path | None:
    """The ``DPS_DATA_DIR`` directory of local benchmark files, if set."""
    value = os.environ.get("DPS_DATA_DIR")
    return Path(value).expanduser() if value else None
