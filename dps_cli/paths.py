"""Where dps keeps files outside a run directory: model cache, controller registry, data.

``DPS_HOME`` moves everything (cache and controllers) under one directory; otherwise the
platform's user cache and data directories are used. ``DPS_DATA_DIR`` points at local copies of
benchmark files for offline use.
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir, user_data_dir

from dps_cli.errors import UserError

APP_NAME = "dps"


def home_dir() -> Path | None:
    """The ``DPS_HOME`` override, if set."""
    return _directory_variable("DPS_HOME")


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
    return _directory_variable("DPS_DATA_DIR")


def _directory_variable(name: str) -> Path | None:
    """An environment variable naming a directory; one that names an existing file is refused."""
    value = os.environ.get(name)
    if not value:
        return None
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{name}={value} is a file, not a directory.", f"Point {name} at a directory or unset it.")
    return path
