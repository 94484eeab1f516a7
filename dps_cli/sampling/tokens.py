"""Per-step token statistics and sampling, batched over rows.

Both log-probabilities come from the same logits: ``logp_base`` from the untempered softmax (in
float32) and ``logq_proposal`` from softmax(logits / T). Sampling is inverse-CDF with one uniform
per row drawn from that row's own generator, so a chain's tokens never depend on its batch
neighbours.

The sampling itself runs in float64, because the MH ratio needs the log-probability of the law
actually sampled. In float32 a uniform within 2^-25 of 1 rounds to 1.0 and a cumulative sum over
a large vocabulary drifts by more than the smallest probabilities, so the inverse CDF can return a
token whose interval does not match its recorded log q, or the last vocabulary id whatever its
probability (a padding id with log q = -inf, whose ratios are NaN from then on). Here the
uniforms, q and its CDF are float64, the token returned always has q > 0, and the log q recorded
is the float64 log-probability whose CDF interval the uniform fell in.

Non-finite logits (NaN or +inf anywhere in a row, or no finite entry: float16 overflow or a broken
model) raise `NonFiniteLogits` instead of feeding NaN into a ratio; -inf entries alone are a
legitimate mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dps_cli.errors import DpsError


class NonFiniteLogits(DpsError):
    """A model returned NaN or +inf logits, or a row with no finite logit (``rows`` of ``of``)."""

    def __init__(self, message: str, rows: int = 0, of: int = 0) -> None:
        super().__init__(message)
        self.rows, self.of = rows, of


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
        uniforms: (B,) draws in [0, 1) from each row's generator (ignored for greedy rows); give
            them as float64 (a float32 tensor has already rounded values near 1 up to 1.0).

    Raises:
        NonFiniteLogits: some row has a NaN or +inf logit, or no finite logit at all.
    """
    if logits.device.type == "mps":  # no float64 on MPS: sample on the CPU (one copy of B x V)
        logits, temperatures, uniforms = logits.cpu(), temperatures.cpu(), uniforms.cpu()
    logits = logits.float()
    bad = (logits.isnan() | logits.isposinf()).any(-1) | ~logits.isfinite().any(-1)
    logp_all = torch.log_softmax(logits, dim=-1)  # (B, V)
    probs = logp_all.exp()
    entropy = -(probs * logp_all).nan_to_num(0.0).sum(-1)  # p = 0 with log p = -inf contributes 0
    max_prob = probs.max(-1).values
    greedy = temperatures <= 0
    safe_t = torch.where(greedy, torch.ones_like(temperatures), temperatures).to(torch.float64)
    logq_all = torch.log_softmax(logits.double() / safe_t[:, None], dim=-1)  # (B, V) float64
    tokens = torch.where(greedy, logits.argmax(-1), _inverse_cdf(logq_all.exp(), uniforms))
    logp = logp_all.gather(-1, tokens[:, None]).squeeze(-1)
    logq = torch.where(greedy, torch.zeros_like(safe_t), logq_all.gather(-1, tokens[:, None]).squeeze(-1))
    stats = torch.stack([tokens.double(), logp.double(), logq, entropy.double(), max_prob.double(),
                         bad.double()]).cpu()  # one device sync
    if stats[5].any():
        rows, of = int(stats[5].sum()), len(stats[5])
        raise NonFiniteLogits(f"The model returned NaN or infinite logits in {rows} of {of} rows.", rows, of)
    return StepOutput(
        tokens=stats[0].long().tolist(),
        logp_base=stats[1].tolist(),
        logq_proposal=stats[2].tolist(),
        entropy=stats[3].tolist(),
        max_prob=stats[4].tolist(),
    )


def _inverse_cdf(q: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """The token whose CDF interval of ``q`` (B, V, float64) holds each row's uniform.

    ``searchsorted(right=True)`` returns the first id whose CDF exceeds u * total, which always
    has q > 0; when rounding puts u * total at or past the total, the last id with q > 0 is
    taken instead of the last id of the vocabulary.
    """
    cdf = q.cumsum(-1)
    targets = (uniforms.to(device=q.device, dtype=torch.float64) * cdf[:, -1])[:, None]
    found = torch.searchsorted(cdf, targets, right=True).squeeze(-1)
    last_positive = q.shape[-1] - 1 - (q > 0).flip(-1).to(torch.int8).argmax(-1)
    return torch.minimum(found, last_positive)
