"""Resolve a ``--model`` value and load the model and tokenizer onto a device.

Accepted values: the alias of the embedded default (``smollm2-135m``), a local directory in
Hugging Face format, a ``.gguf`` file, or a Hugging Face hub id. GGUF files are converted once to
safetensors in the user cache (the first GGUF load de-quantizes every tensor, tens of seconds on a
small CPU; a safetensors reload takes under a second).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dps_cli.errors import UserError
from dps_cli.models import embedded
from dps_cli.paths import cache_dir

logger = logging.getLogger(__name__)

DEFAULT_MODEL = embedded.ALIAS
CONVERTED_MARKER = "dps-converted.json"  # written last: a directory without it is unfinished
EMBEDDED_CONVERTED_NAME = f"{embedded.ALIAS}-instruct"


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from, before loading."""

    spec: str  # what the user typed
    kind: str  # "embedded" | "directory" | "gguf" | "hub"
    location: str  # directory, file path or hub id
    model_id: str  # the id recorded in manifests


@dataclass
class LoadedModel:
    """A model ready for the engine, with the facts manifests and controllers need."""

    model: Any  # transformers PreTrainedModel, eval mode
    tokenizer: Any
    source: ModelSource
    device: str
    dtype: str
    eos_token_ids: tuple[int, ...]
    hidden_size: int
    num_layers: int

    def describe(self) -> dict[str, Any]:
        """The manifest's ``model`` section."""
        return {
            "id": self.source.model_id,
            "source": self.source.kind,
            "location": self.source.location,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "dtype": self.dtype,
            "device": self.device,
            "eos_token_ids": list(self.eos_token_ids),
        }


def resolve_model(spec: str) -> ModelSource:
    """Classify a ``--model`` value without loading anything."""
    if spec == embedded.ALIAS:
        return ModelSource(spec, "embedded", embedded.ALIAS, embedded.MODEL_ID)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise UserError(f"GGUF file {spec} {what}.", "Check the path given to --model.")
        if not _has_gguf_magic(path):
            raise UserError(f"{spec} is not a GGUF file (it does not start with the GGUF magic bytes).",
                            "Pass a .gguf model file, a model directory or a hub id.")
        return ModelSource(spec, "gguf", str(path.resolve()), path.name)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise UserError(
                f"Directory {spec} is not a Hugging Face model: it has no config.json.",
                "Pass a directory saved with save_pretrained, a .gguf file or a hub id.",
            )
        return ModelSource(spec, "directory", str(path.resolve()), str(path.resolve()))
    if path.exists():
        raise UserError(
            f"Model path {spec} is a file, not a model.",
            "Pass a directory saved with save_pretrained, a .gguf file, a hub id or "
            f"the alias {embedded.ALIAS!r}.",
        )
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise UserError(f"Model path {spec} does not exist.", "Check the path given to --model.")
    return ModelSource(spec, "hub", spec, spec)


def _has_gguf_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"GGUF"
    except OSError:
        return False


def pick_device(requested: str) -> str:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must be available."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"Device {requested!r} was requested but CUDA is not available.", "Use --device auto or cpu.")
    if requested not in ("cpu", "mps") and not requested.startswith("cuda"):
        raise UserError(f"Unknown device {requested!r}.", "Use auto, cpu, cuda, cuda:N or mps.")
    return requested


def pick_dtype(device: str, requested: str = "auto") -> str:
    """bfloat16 on CUDA, float32 elsewhere, unless the user asks otherwise."""
    if requested != "auto":
        if requested not in ("float32", "bfloat16", "float16"):
            raise UserError(f"Unknown dtype {requested!r}.", "Use auto, float32, bfloat16 or float16.")
        return requested
    return "bfloat16" if device.startswith("cuda") else "float32"


def load_model(spec: str, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load model and tokenizer for ``spec`` onto ``device`` in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # our own progress goes to stderr; theirs would interleave
    source = resolve_model(spec)
    resolved_device = pick_device(device)
    resolved_dtype = pick_dtype(resolved_device, dtype)
    directory = _local_directory(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=getattr(torch, resolved_dtype))
    except (OSError, ValueError) as err:  # missing files, unreadable config.json or weights
        raise UserError(
            f"Could not load model {spec!r}: {(str(err).strip().splitlines() or [type(err).__name__])[0]}",
            "Without network access pass a local directory, a .gguf file or the embedded "
            f"alias {embedded.ALIAS!r}.",
        ) from None
    model.to(resolved_device)  # type: ignore[arg-type]  # transformers' stub types `to` oddly
    model.eval()  # type: ignore[no-untyped-call]
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        source=source,
        device=resolved_device,
        dtype=resolved_dtype,
        eos_token_ids=eos_token_ids(model, tokenizer),
        hidden_size=int(config.hidden_size),
        num_layers=int(config.num_hidden_layers),
    )


def eos_token_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    """Every token that ends a completion: the generation config's EOS ids and the tokenizer's."""
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return tuple(sorted(ids))


def _local_directory(source: ModelSource) -> str:
    """A directory (or hub id) that ``from_pretrained`` can read quickly."""
    if source.kind == "embedded":
        return str(_converted_gguf(embedded.embedded_gguf_path(), name=EMBEDDED_CONVERTED_NAME))
    if source.kind == "gguf":
        return str(_converted_gguf(Path(source.location), name=None))
    return source.location


def converted_models_dir() -> Path:
    """The user-cache directory that holds every converted GGUF model."""
    return cache_dir() / "models"


def converted_gguf_dir(gguf_path: Path, name: str | None = None) -> Path:
    """Where ``gguf_path`` is (or will be) converted; keyed by its path, size and mtime."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return converted_models_dir() / f"{name or gguf_path.stem}-{key}"


def is_converted(directory: Path) -> bool:
    """True when ``directory`` holds a finished conversion (its marker is written last)."""
    return (directory / CONVERTED_MARKER).exists()


def embedded_converted_dir(gguf_path: Path) -> Path:
    """The conversion directory of the embedded model's GGUF file."""
    return converted_gguf_dir(gguf_path, name=EMBEDDED_CONVERTED_NAME)


def _converted_gguf(gguf_path: Path, name: str | None) -> Path:
    """Convert a GGUF file to a safetensors directory once; later loads reuse it."""
    target = converted_gguf_dir(gguf_path, name)
    if is_converted(target):
        return target
    stat = gguf_path.stat()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting %s to safetensors (first use only)", gguf_path.name)
    directory, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename, dtype=torch.float32)
    # The weights are de-quantized to float32 already; drop the GGUF quantizer so they can be saved.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / CONVERTED_MARKER).write_text(json.dumps({"gguf": str(gguf_path), "size": stat.st_size}))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target
