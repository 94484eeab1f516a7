"""Per-step token statistics and sampling, batched over rows, in float32.

Both log-probabilities come from the same logits: ``logp_base`` from the untempered softmax and
``logq_proposal`` from softmax(logits / T). Sampling is inverse-CDF with one uniform per row drawn
from that row's own generator, so a chain's tokens never depend on its batch neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepOutput:
    """One decode step's results, each (B,) on the CPU."""

    tokens: list[int]
    logp_base: list[float]
    logq_proposal: list[float]
    entropy: list[float]
    max_prob: list[float]


def sample_step(logits: torch.Tensor, temperatures: torch.Tensor, uniforms: torch.Tensor) -> StepOutput:
    """Sample one token per row and report its statistics.

    Args:
        logits: (B, V) next-token logits.
        temperatures: (B,) proposal temperatures; 0 means greedy (argmax, logq = 0).
        uniforms: (B,) draws in [0, 1) from each row's generator (ignored for greedy rows).
    """
    logits = logits.float()
    logp_all = torch.log_softmax(logits, dim=-1)  # (B, V)
    probs = logp_all.exp()
    entropy = -(probs * logp_all).nan_to_num(0.0).sum(-1)  # p = 0 with log p = -inf contributes 0
    max_prob = probs.max(-1).values
    greedy = temperatures <= 0
    safe_t = torch.where(greedy, torch.ones_like(temperatures), temperatures)
    logq_all = torch.log_softmax(logits / safe_t[:, None], dim=-1)  # (B, V)
    cdf = logq_all.exp().cumsum(-1)
    targets = (uniforms * cdf[:, -1])[:, None]
    sampled = torch.searchsorted(cdf, targets, right=True).squeeze(-1).clamp(max=logits.shape[-1] - 1)
    tokens = torch.where(greedy, logits.argmax(-1), sampled)
    logp = logp_all.gather(-1, tokens[:, None]).squeeze(-1)
    logq = torch.where(greedy, torch.zeros_like(logp), logq_all.gather(-1, tokens[:, None]).squeeze(-1))
    stats = torch.stack([tokens.float(), logp, logq, entropy, max_prob]).cpu()  # one device sync
    return StepOutput(
        tokens=stats[0].long().tolist(),  # ids < 2**24 are exact in float32
        logp_base=stats[1].tolist(),
        logq_proposal=stats[2].tolist(),
        entropy=stats[3].tolist(),
        max_prob=stats[4].tolist(),
    )
