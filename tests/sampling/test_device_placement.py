"""Every tensor the ``hf`` engine creates follows the model's device and dtype, checked on the CPU.

On CUDA a tensor made without ``device=`` lands on the CPU and the next operation that mixes it with
the model's tensors fails; one made without ``dtype=`` takes torch's default. Neither shows on a
CPU-only machine with default settings, so here the run happens with the default device set to
``meta`` (a tensor that does not follow the model is placed there, where it has no data and breaks
the run) and the default dtype set to float16, while a dispatch mode records the device and dtype
of every tensor any operation returns. The model is in bfloat16: only bfloat16 (weights,
activations, the key/value cache), float32 (the statistics) and float64 (the sampler's uniforms and
inverse CDF, tokens.py) may appear, each by design; a tensor made without ``dtype=`` shows as float16.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from conftest import build_tiny_llama
from torch.utils._python_dispatch import TorchDispatchMode

from dps_cli.sampling.engine import Engine
from dps_cli.sampling.policies import FixedK
from dps_cli.sampling.power import PowerSettings, power_chain, sampling_chain

EOS = 2


class TensorLog(TorchDispatchMode):
    """Counts (device type, dtype) of every tensor an operation returns."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[tuple[str, torch.dtype]] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor):
                self.seen[(tensor.device.type, tensor.dtype)] += 1
        return out


def run(model: Any) -> dict[Any, Any]:
    settings = PowerSettings(alpha=4.0, max_new_tokens=8, blocks=2, checkpoints=(1, 2), hidden=True,
                             eos_token_ids=(EOS,))
    drivers: list[tuple[Any, Any]] = [
        (i, power_chain((3, 4 + i, 5, 6)[: 2 + i % 3], settings, FixedK(2), np.random.default_rng(i)))
        for i in range(6)]
    drivers.append(("greedy", sampling_chain((7, 8), 5, 0.0, np.random.default_rng(0), (EOS,))))
    results: dict[Any, Any] = {}
    Engine(model, (EOS,), max_batch=4, hidden_layer=1).run(drivers, results.__setitem__)
    return results


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return build_tiny_llama(40, seed=0, eos_token_id=EOS, scale=3.0).to(torch.bfloat16)


def test_engine_tensors_follow_the_model_device_and_dtype(model) -> None:  # type: ignore[no-untyped-def]
    expected = run(model)
    log = TensorLog()
    torch.set_default_device("meta")
    torch.set_default_dtype(torch.float16)
    try:
        with log:
            results = run(model)
    finally:
        torch.set_default_device(None)
        torch.set_default_dtype(torch.float32)
    assert {key: r.sequence.tokens.tolist() for key, r in results.items()} == \
        {key: r.sequence.tokens.tolist() for key, r in expected.items()}
    devices = {device for device, _ in log.seen}
    floats = {dtype for _, dtype in log.seen if dtype.is_floating_point}
    assert devices == {"cpu"}
    assert floats == {torch.bfloat16, torch.float32, torch.float64}
    assert log.seen[("cpu", torch.bfloat16)] > 0 and log.seen[("cpu", torch.float32)] > 0
    for key, result in results.items():
        cache = result.sequence.cache
        assert cache.dtype == torch.bfloat16 and cache.device.type == "cpu"
        assert cache.shape[3] >= len(result.sequence) - 1  # keys/values for all but the last token
        assert result.sequence.logp_base.dtype == np.float32
        if key != "greedy":
            assert result.question_embedding.dtype == np.float32
            assert all(record.hidden.dtype == np.float32 for record in result.checkpoints)
