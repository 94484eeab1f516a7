"""Backend fixtures (registered in conftest.py): the same driver tests on every sampling backend.

``sampler`` is parametrized over the backends (``hf``, ``vllm``). Both sides run one tiny random
Llama saved to a directory (vocabulary 4, head dimension 64 so that vLLM's CPU attention takes it,
2 layers, EOS disabled); ``sampler.model`` is its Hugging Face form, for exact enumeration. A test
module that needs another model assigns ``sampler = backend_sampler(seed=..., scale=...)``. The
vLLM side keeps one engine for the session and restarts it only when the model changes (a start
takes one to four minutes on a small CPU). Without vLLM installed the ``vllm`` cases skip, saying
so; ``make test-vllm`` runs them in a second environment.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TINY_VOCAB = 4
TINY_SEED = 4  # with scale 8, p^4 and the tempered law are 0.55 apart in TV over 3-token outputs
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
            max_batch: int = 512, hidden_layer: int | None = None, decider: Any = None,
            on_done: Callable[[Any, Any], None] | None = None) -> list[tuple[Any, Any]]:
        """Run the drivers to completion; also hand each result to ``on_done`` when given."""
        from dps_cli.sampling.factory import make_backend

        results: list[tuple[Any, Any]] = []

        def done(key: Any, result: Any) -> None:
            results.append((key, result))
            if on_done is not None:
                on_done(key, result)

        if self.name == "hf":
            backend = make_backend("hf", self.model, eos_token_ids, max_batch=max_batch,
                                   hidden_layer=hidden_layer, decider=decider)
        else:
            backend = self.backend.rebind(eos_token_ids=eos_token_ids, max_batch=max_batch,
                                          hidden_layer=hidden_layer, decider=decider)
        backend.run(drivers, done)
        return results


class VllmPool:
    """At most one vLLM engine at a time, reused by every module that runs the same model.

    Starting an engine takes one to four minutes on a small CPU, and two engines must never run
    at once (memory), so a module asking for another model closes the engine in use first.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.key: tuple[Any, ...] | None = None
        self.backend: Any = None

    def get(self, key: tuple[Any, ...], model: Any) -> Any:
        if key != self.key:
            self.close()
            from dps_cli.sampling.vllm_backend import VllmBackend

            path = self.root / "-".join(str(part) for part in key)
            model.save_pretrained(path)
            self.backend = VllmBackend(str(path), (), max_batch=512, scorer=model,
                                       options={"dtype": "float32", "max_model_len": 64,
                                                "top_k": model.config.vocab_size})
            self.key = key
        return self.backend

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
        self.backend, self.key = None, None


@pytest.fixture(scope="session")
def vllm_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmPool]:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(NO_VLLM)
    pool = VllmPool(tmp_path_factory.mktemp("vllm-models"))
    yield pool
    pool.close()


def backend_sampler(seed: int = TINY_SEED, scale: float = TINY_SCALE, vocab_size: int = TINY_VOCAB):  # type: ignore[no-untyped-def]
    """A module-scoped ``sampler`` fixture over ``build_vllm_tiny_llama(vocab_size, seed, scale)``.

    Assign it in a test module (``sampler = backend_sampler(seed=66)``) to run that module's
    tests on both backends over its own model; the conftest's ``sampler`` uses the defaults.
    """

    @pytest.fixture(name="sampler", scope="module", params=["hf", pytest.param("vllm", marks=pytest.mark.vllm)])
    def fixture(request: pytest.FixtureRequest) -> Sampler:
        model = build_vllm_tiny_llama(vocab_size, seed, scale)
        if request.param == "hf":
            return Sampler("hf", model, None)
        pool: VllmPool = request.getfixturevalue("vllm_pool")
        return Sampler("vllm", model, pool.get((vocab_size, seed, scale), model))

    return fixture


sampler = backend_sampler()
