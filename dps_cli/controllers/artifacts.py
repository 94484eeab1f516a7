"""The registry of trained controllers on disk: ``<dir>/<name>/card.json`` + the model file.

The default directory is `dps_cli.paths.controllers_dir()` (under ``DPS_HOME`` when set); every
function takes ``registry_dir`` to use another. A controller is written into a temporary
directory next to its final place and renamed, so a crash never leaves half an artifact.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import shutil
import tempfile
from pathlib import Path

from dps_cli.controllers.base import Controller, FittedModel, LoadedController
from dps_cli.controllers.card import ControllerCard
from dps_cli.controllers.kinds import CONTROLLER_KINDS
from dps_cli.errors import UserError
from dps_cli.paths import controllers_dir

logger = logging.getLogger(__name__)

CARD_FILE = "card.json"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def registry_path(registry_dir: Path | None = None) -> Path:
    """``registry_dir`` if given, else the default controller directory; never a file."""
    root = registry_dir if registry_dir is not None else controllers_dir()
    if root.exists() and not root.is_dir():
        raise UserError(f"Controller registry {root} is a file, not a directory.",
                        "Pass a directory to --registry (or point DPS_HOME at one).")
    return root


def validate_name(name: str) -> None:
    """Names become directory names: letters, digits, '.', '_' and '-', starting alphanumeric."""
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(
            f"Controller name {name!r} is not allowed.",
            "Use letters, digits, '.', '_' and '-', starting with a letter or digit.",
        )


def ensure_name_free(name: str, registry_dir: Path | None = None, force: bool = False) -> None:
    """Refuse to overwrite an existing controller unless ``force``."""
    validate_name(name)
    root = registry_path(registry_dir)
    if (root / name).exists() and not force:
        raise UserError(
            f"A controller named {name!r} already exists in {root}.",
            "Choose another --name, or pass --force to replace it.",
        )


def save_controller(
    model: FittedModel, card: ControllerCard, registry_dir: Path | None = None, force: bool = False
) -> Path:
    """Write ``card`` and ``model`` as ``<registry>/<card.name>/``; returns that directory."""
    ensure_name_free(card.name, registry_dir, force)
    root = registry_path(registry_dir)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{card.name}.", suffix=".tmp", dir=root))
    staging.chmod(0o755)  # mkdtemp makes it private; a controller is an ordinary shared file
    target = root / card.name
    try:
        model.save(staging)
        (staging / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n")
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{card.name}.", suffix=".old", dir=root))
            target.rename(old / card.name)
            staging.rename(target)
            shutil.rmtree(old)
        else:
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    logger.info("saved controller %r to %s", card.name, target)
    return target


def read_card(directory: Path) -> ControllerCard:
    """Parse ``directory/card.json``; UserError if it is unreadable."""
    path = directory / CARD_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"Controller card {path} cannot be read ({err}).") from None
    return ControllerCard.from_dict(data, str(path))


def list_controllers(registry_dir: Path | None = None) -> list[ControllerCard]:
    """Cards of the registry's controllers, sorted by name; broken ones are logged and skipped."""
    root = registry_path(registry_dir)
    if not root.is_dir():
        return []
    cards = []
    for directory in sorted(root.iterdir()):
        if directory.name.startswith(".") or not (directory / CARD_FILE).is_file():
            continue
        try:
            cards.append(read_card(directory))
        except UserError as err:
            logger.warning("skipping %s: %s", directory, err)
    return cards


def controller_dir(name: str, registry_dir: Path | None = None) -> Path:
    """The directory of controller ``name``; unknown names get a did-you-mean UserError."""
    root = registry_path(registry_dir)
    path = root / name
    if NAME_PATTERN.fullmatch(name) and (path / CARD_FILE).is_file():
        return path
    names = [card.name for card in list_controllers(registry_dir)]
    if not names:
        raise UserError(
            f"Unknown controller {name!r}: the registry {root} holds no controllers.",
            "Train one with 'dps train-controller KIND --data TABLE.parquet --name NAME'.",
        )
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    raise UserError(
        f"Unknown controller {name!r} in {root}.", f"{hint}Available: {', '.join(names)}."
    )


def load_controller(name: str, registry_dir: Path | None = None) -> Controller:
    """Load a trained controller once; the result predicts without touching the disk again."""
    directory = controller_dir(name, registry_dir)
    card = read_card(directory)
    from dps_cli.controllers.constant import load_constant

    try:
        constant = load_constant(directory)
        model = constant if constant is not None else CONTROLLER_KINDS.get(card.kind).load(directory, card)
    except UserError:
        raise
    except Exception as err:  # any library's error on a damaged model file: named, not a traceback
        raise UserError(
            f"Controller {name!r} in {directory} cannot be loaded ({type(err).__name__}: "
            f"{(str(err).strip().splitlines() or [''])[0]}).",
            f"Retrain it, or remove it with 'dps controllers remove {name}'.",
        ) from None
    return LoadedController(card=card, model=model)


def remove_controller(name: str, registry_dir: Path | None = None) -> Path:
    """Delete controller ``name``; returns the directory it occupied."""
    directory = controller_dir(name, registry_dir)
    shutil.rmtree(directory)
    logger.info("removed controller %r (%s)", name, directory)
    return directory


def check_compatible(
    controller: Controller, *, model_id: str, hidden_layer: int | None, hidden_size: int | None
) -> None:
    """Refuse a controller whose inputs the run cannot provide; warn when the model differs.

    Args:
        controller: the loaded controller.
        model_id: the id of the model the run samples from.
        hidden_layer: the layer the run records (None: ``--hidden-layer none``).
        hidden_size: the model's hidden width (None: unknown, not checked).

    """
    card = controller.card
    if card.uses_hidden or card.uses_question_embedding:
        if hidden_layer is None:
            raise UserError(
                f"Controller '{card.name}' needs hidden states of layer {card.hidden_layer}, "
                "but the run has --hidden-layer none.",
                f"Sample with --hidden-layer {card.hidden_layer}, or use a gbdt controller.",
            )
        width = card.hidden_size if card.hidden_size is not None else card.question_embedding_size
        if hidden_size is not None and width != hidden_size:
            raise UserError(
                f"Controller '{card.name}' was trained on hidden states of width {width} "
                f"from layer {card.hidden_layer}, but model {model_id} has width {hidden_size}.",
                "Train a controller on runs of this model (dps collect, dps train-controller).",
            )
        if hidden_layer != card.hidden_layer:
            raise UserError(
                f"Controller '{card.name}' was trained on hidden states of layer "
                f"{card.hidden_layer}, but the run records layer {hidden_layer}.",
                f"Sample with --hidden-layer {card.hidden_layer}.",
            )
    if model_id != card.model_id:
        logger.warning(
            "controller %r was trained on model %s, not %s; its probabilities may be off",
            card.name,
            card.model_id,
            model_id,
        )
