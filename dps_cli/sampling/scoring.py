"""Scoring stored completions under the base model: one teacher-forced forward pass per batch.

Voting baselines (`dps_cli.pipeline.scoring`) rank samples by their mean per-token log p; the
forward pass lives here, beside the other code that runs the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


def teacher_forced_mean_logp(model: Any, prompts: Sequence[list[int]],
                             completions: Sequence[Sequence[int]]) -> list[float]:
    """Mean per-token log p of each completion after its prompt (NaN for an empty completion).

    One left-padded teacher-forced forward pass, in float32, with logits kept only where the
    completions sit, so a batch of long prompts costs no vocabulary-wide logits for them.
    """
    sequences = [list(p) + list(c) for p, c in zip(prompts, completions, strict=True)]
    width = max(len(s) for s in sequences)
    keep = max(len(c) for c in completions) + 1
    device = next(model.parameters()).device
    ids = torch.zeros((len(sequences), width), dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, width - len(sequence):] = torch.tensor(sequence, dtype=torch.long)
        mask[row, width - len(sequence):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                    position_ids=positions.to(device), logits_to_keep=keep)  # fmt: skip
        logp = torch.log_softmax(out.logits.float(), dim=-1).cpu()  # (B, keep, V)
    scores = []
    for row, completion in enumerate(completions):
        if not completion:
            scores.append(math.nan)
            continue
        # the logit at kept index j predicts the token at position width - keep + j + 1
        first = keep - len(completion) - 1
        targets = torch.tensor(list(completion), dtype=torch.long)
        picked = logp[row, first : first + len(completion)].gather(-1, targets[:, None])
        scores.append(float(picked.double().mean()))
    return scores
