"""Backend fixtures (registered in conftest.py): the same driver tests on every sampling backend.

``sampler`` is parametrized over the backends (``hf``, ``vllm``). Both sides run one tiny random
Llama saved to a directory (vocabulary 4, head dimension 64 so that vLLM's CPU attention takes it,
2 layers, EOS disabled); ``sampler.model`` is its Hugging Face form, for exact enumeration. The vLLM
engine starts once per test session (it takes one to four minutes on a small CPU). Without vLLM
installed the ``vllm`` cases skip, saying so; ``make test-vllm`` runs them in a second environment.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TINY_VOCAB = 4
TINY_SEED = 2
TINY_SCALE = 8.0
NO_VLLM = "vLLM is not installed here; `make test-vllm` runs these cases in .venv-vllm"


def build_vllm_tiny_llama(vocab_size: int = TINY_VOCAB, seed: int = TINY_SEED, scale: float = TINY_SCALE,
                          eos_token_id: int | None = None):  # type: ignore[no-untyped-def]
    """A 2-layer Llama with one head of dimension 64 (the smallest shape vLLM's CPU kernels take)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=1, num_key_value_heads=1, head_dim=64, max_position_embeddings=256,
        eos_token_id=eos_token_id, bos_token_id=0, pad_token_id=0, tie_word_embeddings=False,
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    return model.eval()


@dataclass
class Sampler:
    """One backend over the tiny model: ``run`` drives generators and returns (key, result) pairs."""

    name: str
    model: Any  # the Hugging Face model with the same weights
    backend: Any  # a started backend (vllm) or None (hf backends are made per run)

    def run(self, drivers: Iterable[tuple[Any, Any]], eos_token_ids: tuple[int, ...] = (),
            max_batch: int = 512, hidden_layer: int | None = None) -> list[tuple[Any, Any]]:
        from dps_cli.sampling.backend import make_backend

        results: list[tuple[Any, Any]] = []
        if self.name == "hf":
            backend = make_backend("hf", self.model, eos_token_ids, max_batch=max_batch, hidden_layer=hidden_layer)
        else:
            backend = self.backend.rebind(eos_token_ids=eos_token_ids, max_batch=max_batch,
                                          hidden_layer=hidden_layer)
        backend.run(drivers, lambda key, result: results.append((key, result)))
        return results


@pytest.fixture(scope="session")
def tiny_vllm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-llama-vocab4")
    build_vllm_tiny_llama().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_hf(tiny_vllm_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_vllm_dir).eval()


@pytest.fixture(scope="session")
def tiny_vllm(tiny_vllm_dir: Path, tiny_hf: Any) -> Iterator[Any]:
    """One vLLM engine on the tiny model for the whole session (startup is slow)."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(NO_VLLM)
    from dps_cli.sampling.vllm_backend import VllmBackend

    backend = VllmBackend(str(tiny_vllm_dir), (), max_batch=512, scorer=tiny_hf,
                          options={"dtype": "float32", "max_model_len": 64, "top_k": TINY_VOCAB})
    yield backend
    backend.close()


@pytest.fixture(scope="module", params=["hf", pytest.param("vllm", marks=pytest.mark.vllm)])
def sampler(request: pytest.FixtureRequest, tiny_hf: Any) -> Sampler:
    """The tiny model behind each backend in turn."""
    if request.param == "hf":
        return Sampler("hf", tiny_hf, None)
    return Sampler("vllm", tiny_hf, request.getfixturevalue("tiny_vllm"))
