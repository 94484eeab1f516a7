"""A faithful re-implementation of the reference power sampler, for speed comparisons only.

As in the original code, one chain runs at a time and every block extension and every MH proposal
is a fresh ``model.generate`` call from the full prefix (no cache reuse between calls). The
acceptance rule is the corrected one (whole suffixes), so both samplers do the same work.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def _generate(model: Any, prefix: list[int], n: int, alpha: float, eos: tuple[int, ...]
              ) -> tuple[list[int], list[float], list[float]]:
    """Sample up to n tokens after ``prefix`` at temperature 1/alpha; log p and log q per token."""
    out = model.generate(
        torch.tensor([prefix], device=model.device), max_new_tokens=n, do_sample=True,
        temperature=1.0 / alpha, top_k=0, top_p=1.0, output_logits=True, return_dict_in_generate=True,
        eos_token_id=list(eos) or None, pad_token_id=eos[0] if eos else 0,
    )
    tokens = out.sequences[0, len(prefix):].tolist()
    logits = torch.stack(out.logits)[: len(tokens), 0].float()  # (n, V)
    chosen = torch.tensor(tokens, device=logits.device)[:, None]
    logp = torch.log_softmax(logits, -1).gather(-1, chosen).squeeze(-1).tolist()
    logq = torch.log_softmax(logits * alpha, -1).gather(-1, chosen).squeeze(-1).tolist()
    if eos:  # generate pads after EOS; keep up to and including the first EOS
        for i, token in enumerate(tokens):
            if token in eos:
                return tokens[: i + 1], logp[: i + 1], logq[: i + 1]
    return tokens, logp, logq


def reference_power_chain(model: Any, prompt: list[int], alpha: float, max_new_tokens: int, blocks: int,
                          k: int, eos: tuple[int, ...], rng: np.random.Generator) -> dict[str, Any]:
    """One chain of block-wise MH power sampling, the reference way. Returns token counts."""
    torch.manual_seed(int(rng.integers(2**31)))
    block = max_new_tokens // blocks
    c, gen, logp, logq = len(prompt), list(prompt), [], []
    generated = 0
    for _ in range(blocks):
        tokens, lp, lq = _generate(model, gen, block, alpha, eos)
        gen, logp, logq, generated = gen + tokens, logp + lp, logq + lq, generated + len(tokens)
        for _ in range(k):
            t = len(gen)
            i = int(rng.integers(c, t))
            tokens, lp, lq = _generate(model, gen[:i], t - i, alpha, eos)
            generated += len(tokens)
            j = i - c
            log_r = alpha * (sum(lp) - sum(logp[j:])) + (sum(logq[j:]) - sum(lq))
            if math.log(max(rng.random(), 1e-300)) < log_r:
                gen, logp, logq = gen[:i] + tokens, logp[:j] + lp, logq[:j] + lq
        if eos and any(token in eos for token in gen[c:]):
            break
    return {"tokens_generated": generated, "tokens_kept": len(gen) - c}
