"""Batched teacher-forced scoring against one unpadded forward pass per sequence."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import build_tiny_llama

from dps_cli.sampling.scoring import teacher_forced_mean_logp


def test_left_padded_batch_scores_each_completion_as_it_would_alone() -> None:
    model = build_tiny_llama(11, seed=3, scale=3.0)
    prompts = [[1, 2, 3, 4, 5], [6], [2, 9]]
    completions = [[7, 8], [3, 3, 10, 1], []]
    scores = teacher_forced_mean_logp(model, prompts, completions)
    for prompt, completion, score in zip(prompts[:2], completions[:2], scores[:2], strict=True):
        ids = torch.tensor([prompt + completion])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].double(), -1)
        alone = sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(completion)) / len(completion)
        assert score == pytest.approx(alone, abs=1e-5)
    assert math.isnan(scores[2])
