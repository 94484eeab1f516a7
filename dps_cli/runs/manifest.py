"""Reading a run's manifest.json, with one sentence for every way it can be unusable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dps_cli.errors import UserError
from dps_cli.runs.parts import major_version
from dps_cli.runs.schema import SCHEMA_VERSION

RESTORE_HINT = "Restore it or remove the run directory and sample again."

# Config fields that readers use, with the JSON types `dps sample` writes for them.
CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "task": (str,), "data": (str, type(None)), "model": (str,), "method": (str,),
    "k": (int, type(None)), "alpha": (int, float, type(None)), "temperature": (int, float, type(None)),
    "max_new_tokens": (int,), "hidden_layer": (int, type(None)), "controller": (str, type(None)),
}  # fmt: skip


def read_manifest_file(path: Path, root: Path) -> dict[str, Any]:
    """The manifest at ``path`` (of the run at ``root``) as a dict; UserError if unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"No run at {root}: manifest.json is missing.",
            "Pass a run directory written by `dps sample --out DIR`.",
        ) from None
    except (OSError, UnicodeDecodeError) as err:  # a directory, unreadable, not UTF-8
        raise UserError(f"Manifest {path} cannot be read ({err}).", RESTORE_HINT) from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(
            f"Manifest {path} is not valid JSON ({err.msg}, line {err.lineno}).", RESTORE_HINT
        ) from None
    problem = manifest_problem(manifest)
    if problem or not isinstance(manifest, dict):
        raise UserError(f"Manifest {path} is not {problem or 'a JSON object'}.", RESTORE_HINT)
    check_manifest_version(manifest, path)
    return manifest


def check_manifest_version(manifest: dict[str, Any], path: Path) -> None:
    """Refuse a manifest of a newer major run schema, as `check_part` refuses such a part.

    A manifest without ``schema_version`` predates the key and is read as the current schema.
    """
    version = manifest.get("schema_version")
    if version is None:
        return
    try:
        major = major_version(version) if isinstance(version, str) else None
    except ValueError:
        major = None
    if major is None:
        raise UserError(f"Manifest {path} has a malformed schema_version {json.dumps(version)}.", RESTORE_HINT)
    if major > major_version(SCHEMA_VERSION):
        raise UserError(
            f"Manifest {path} was written with run schema {version}, newer than the {SCHEMA_VERSION} "
            "this dps reads.",
            "Upgrade dps (pip install -U dps-cli) to read this run.",
        )


def manifest_problem(manifest: Any) -> str | None:
    """What makes a parsed manifest unusable ("a JSON object", ...), or None if it is fine."""
    if not isinstance(manifest, dict):
        return "a JSON object"
    config = manifest.get("config", {})
    if not isinstance(config, dict):
        return "a dps manifest (its config is not an object)"
    for key, types in CONFIG_TYPES.items():
        value = config.get(key)
        if key in config and (not isinstance(value, types) or isinstance(value, bool)):
            return f"a dps manifest (config.{key} is {json.dumps(value)})"
    return None


def normalized(config: Any) -> dict[str, Any]:
    """The config as it reads back from JSON (tuples become lists, keys become strings)."""
    value = json.loads(json.dumps(config))
    return value if isinstance(value, dict) else {"config": value}
