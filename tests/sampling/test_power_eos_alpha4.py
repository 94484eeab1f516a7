"""The power sampler with EOS at the paper's alpha = 4, on a tiny model that mixes there.

At alpha 4 the tiny models whose p^alpha is spread over lengths mix too slowly for a test (TV
0.3-0.7 to p^alpha after 20 proposals on every one we computed with `exact_chain`). This model
(4 tokens, EOS = 3, seed 8, scale 3, 2 new tokens in 2 blocks) concentrates p^4 on the completion
that ends at once (94%), far from the proposal's law (TV 0.69), and its exact chain reaches
p^alpha: TV 0.04 at k = 20 and 0.002 at k = 40 with ``continue`` or ``jump`` (the same schedule
with 2 blocks), while ``stop`` keeps a limit bias of 0.014.

The chains (2,000 per comparison, fixed seeds, on both backends) are compared with the exact chain
at the same k: the threshold is `laws.tv_threshold` (about 0.024 here), so a correct sampler
fails with probability 1e-3 and a bias over about 0.05 fails with probability 0.999.
"""

from __future__ import annotations

import numpy as np
import pytest
from backend_fixtures import backend_sampler, build_vllm_tiny_llama
from exact_chain import TinyLaw, Tokens, chain_law, tiny_law
from laws import completion_law, tv, tv_threshold

from dps_cli.sampling.policies import FixedK
from dps_cli.sampling.power import PowerSettings, power_chain

VOCAB, EOS, NEW, BLOCKS, ALPHA, PROMPT, CHAINS = 4, 3, 2, 2, 4.0, (1,), 2000
SEED, SCALE = 8, 3.0
sampler = backend_sampler(seed=SEED, scale=SCALE)


@pytest.fixture(scope="module")
def law() -> TinyLaw:
    return tiny_law(build_vllm_tiny_llama(VOCAB, SEED, SCALE), PROMPT, VOCAB, EOS, NEW, ALPHA)


def test_the_exact_chain_mixes_at_alpha_4_and_only_stop_is_biased(law: TinyLaw) -> None:
    power = law.power()
    assert tv(power, law.tempered()) > 0.6
    for mode in ("continue", "jump"):
        assert tv(chain_law(law, BLOCKS, mode, 40), power) < 0.005
        assert tv(chain_law(law, BLOCKS, mode, 3000), power) < 1e-6
    assert tv(chain_law(law, BLOCKS, "stop", 3000), power) == pytest.approx(0.014, abs=0.001)


@pytest.mark.parametrize("after_eos", ["stop", "jump"])
def test_chains_at_alpha_4_follow_the_exact_chain(sampler, law: TinyLaw, after_eos: str) -> None:  # type: ignore[no-untyped-def]
    settings = PowerSettings(alpha=ALPHA, max_new_tokens=NEW, blocks=BLOCKS, eos_token_ids=(EOS,),
                             after_eos=after_eos)
    for k in (2, 20):
        drivers = ((i, power_chain(PROMPT, settings, FixedK(k), np.random.default_rng(i))) for i in range(CHAINS))
        sampled: dict[Tokens, float] = completion_law(sampler, drivers, (EOS,), NEW, PROMPT, CHAINS)  # type: ignore[assignment]
        exact = chain_law(law, BLOCKS, after_eos, k)
        assert tv(sampled, exact) < tv_threshold(exact, CHAINS), k
        assert (tv(sampled, law.power()) < 0.07) == (k == 20)  # 0.52 at k = 2, 0.03-0.04 at k = 20
