"""Engine behaviour on tiny fp32 models: exactness of recorded statistics, greedy equivalence,
batch independence, EOS handling and the MH bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import build_tiny_llama

from dps_cli.config import DEFAULT_AFTER_EOS
from dps_cli.sampling.engine import Engine
from dps_cli.sampling.policies import DynamicK, FixedK
from dps_cli.sampling.power import (
    PowerSettings,
    power_chain,
    sampling_chain,
    truncate_at_eos,
)

EOS = 2


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return build_tiny_llama(40, seed=0, eos_token_id=EOS, scale=3.0)


@pytest.fixture(scope="module")
def alone(model):  # type: ignore[no-untyped-def]
    return run_power(model, max_batch=1)


@pytest.fixture(scope="module")
def shared(model):  # type: ignore[no-untyped-def]
    return run_power(model, max_batch=7, hidden_layer=2)


def prompts(n: int) -> list[tuple[int, ...]]:
    return [tuple(int(t) for t in np.random.default_rng(i).integers(3, 40, size=3 + i)) for i in range(n)]


def run_power(model, max_batch: int, hidden_layer: int | None = None, k: int = 3, eos=(EOS,),  # type: ignore[no-untyped-def]
              after_eos: str = DEFAULT_AFTER_EOS):
    results = {}
    settings = PowerSettings(alpha=4.0, max_new_tokens=16, blocks=4, checkpoints=(2, 4),
                             hidden=hidden_layer is not None, eos_token_ids=eos, after_eos=after_eos)
    drivers = [((i, s), power_chain(p, settings, FixedK(k), np.random.default_rng([i, s])))
               for i, p in enumerate(prompts(5)) for s in range(3)]
    Engine(model, eos, max_batch=max_batch, hidden_layer=hidden_layer).run(drivers, results.__setitem__)
    return results


def test_greedy_equals_model_generate(model) -> None:  # type: ignore[no-untyped-def]
    results = {}
    drivers = [(i, sampling_chain(p, 20, 0.0, np.random.default_rng(0), (EOS,))) for i, p in enumerate(prompts(6))]
    Engine(model, (EOS,), max_batch=4).run(drivers, results.__setitem__)
    for i, p in enumerate(prompts(6)):
        expected = model.generate(torch.tensor([p]), max_new_tokens=20, do_sample=False, eos_token_id=EOS,
                                  pad_token_id=0)[0, len(p):].tolist()
        assert results[i].sequence.generated.tolist() == expected


def test_chain_output_does_not_depend_on_batch_size(alone, shared) -> None:  # type: ignore[no-untyped-def]
    assert alone.keys() == shared.keys()
    for key in alone:
        assert alone[key].sequence.tokens.tolist() == shared[key].sequence.tokens.tolist()
        assert alone[key].proposals_accepted == shared[key].proposals_accepted
        np.testing.assert_allclose(alone[key].sequence.logp_base, shared[key].sequence.logp_base, atol=1e-5)


def test_recorded_statistics_match_a_fresh_forward_pass(model, shared) -> None:  # type: ignore[no-untyped-def]
    for result in shared.values():
        seq = result.sequence
        with torch.no_grad():
            logits = model(torch.from_numpy(seq.tokens)[None]).logits[0].float()
        c = seq.prompt_len
        logp_all = torch.log_softmax(logits[c - 1:-1], -1)
        chosen = torch.from_numpy(seq.tokens[c:])[:, None]
        np.testing.assert_allclose(seq.logp_base, logp_all.gather(-1, chosen).squeeze(-1).numpy(), atol=1e-5)
        logq_all = torch.log_softmax(logits[c - 1:-1] * 4.0, -1)
        np.testing.assert_allclose(seq.logq_proposal, logq_all.gather(-1, chosen).squeeze(-1).numpy(), atol=1e-4)
        entropy = -(logp_all.exp() * logp_all).sum(-1).numpy()
        np.testing.assert_allclose(seq.entropy, entropy, atol=1e-5)
        np.testing.assert_allclose(seq.max_prob, logp_all.exp().max(-1).values.numpy(), atol=1e-6)


def test_prompt_preserved_and_budget_respected(shared) -> None:  # type: ignore[no-untyped-def]
    for (i, _), result in shared.items():
        p = prompts(5)[i]
        assert tuple(result.sequence.tokens[: len(p)].tolist()) == p
        assert len(result.sequence.generated) <= 16
        assert result.k_schedule == [3] * len(result.k_schedule)
        assert result.proposals_attempted == 3 * len(result.k_schedule)
        assert 0 <= result.proposals_accepted <= result.proposals_attempted


def test_fixed_seed_gives_identical_output(model, shared) -> None:  # type: ignore[no-untyped-def]
    again = run_power(model, max_batch=7, hidden_layer=2)
    assert all(again[key].sequence.tokens.tolist() == shared[key].sequence.tokens.tolist() for key in shared)


def test_checkpoints_record_features_and_hidden_vectors(model) -> None:  # type: ignore[no-untyped-def]
    # with "stop" every block a chain ran is in its k schedule ("jump" adds its final block there)
    for result in run_power(model, max_batch=7, hidden_layer=2, after_eos="stop").values():
        blocks = [record.block for record in result.checkpoints]
        assert blocks == [b for b in (2, 4) if b <= len(result.k_schedule)]
        for record in result.checkpoints:
            assert record.hidden is not None and record.hidden.shape == (16,)
            assert record.mcmc_perplexity >= 1.0 and 0 < record.mcmc_self_confidence <= 1
            assert record.p_enough is None and not record.escalated
        assert result.question_embedding is not None and result.question_embedding.shape == (16,)


@pytest.mark.parametrize(("after_eos", "blocks_run"), [("stop", 1), ("jump", 2)])
def test_eos_stops_the_chain_after_its_block(model, after_eos: str, blocks_run: int) -> None:  # type: ignore[no-untyped-def]
    # every token is an EOS: each block extension stops at once and the chain ends after block 1
    # ("stop") or after one more block at the final length ("jump")
    eos = tuple(range(40))
    for result in run_power(model, max_batch=4, eos=eos, after_eos=after_eos).values():
        assert len(result.k_schedule) == blocks_run
        assert result.stopped_at_eos and len(result.completion_ids) == 1


def test_truncate_at_eos() -> None:
    tokens, stopped = truncate_at_eos(np.array([5, 6, 2, 7]), {2})
    assert tokens.tolist() == [5, 6, 2] and stopped
    tokens, stopped = truncate_at_eos(np.array([5, 6]), {2})
    assert tokens.tolist() == [5, 6] and not stopped


def test_dynamic_k_escalates_exactly_when_controller_says(model) -> None:  # type: ignore[no-untyped-def]
    """Scripted controller: p_enough 0.1 at every checkpoint -> 1 - p = 0.9 > tau = 0.5."""
    calls: list[int] = []

    def decider(records):  # type: ignore[no-untyped-def]
        calls.append(len(records))
        return np.array([0.1 if r.block < 6 else 0.9 for r in records])

    settings = PowerSettings(alpha=4.0, max_new_tokens=32, blocks=8, checkpoints=(1, 2, 3, 4, 6), eos_token_ids=())
    results = {}
    drivers = [(i, power_chain(p, settings, DynamicK(tau=0.5), np.random.default_rng(i)))
               for i, p in enumerate(prompts(4))]
    Engine(model, (), max_batch=4, decider=decider).run(drivers, results.__setitem__)
    for result in results.values():
        # blocks 1..8: start 2; escalate after 1, 2, 3 (-> 8), capped at 8 after 4; 6 says enough
        assert result.k_schedule == [2, 4, 6, 8, 8, 8, 8, 8]
        assert [r.escalated for r in result.checkpoints] == [True, True, True, False, False]
        assert [r.p_enough for r in result.checkpoints] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.9])
    assert max(calls) > 1  # chains at the same checkpoint were answered in one batched call
