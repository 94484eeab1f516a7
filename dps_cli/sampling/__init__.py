"""The one sampling core: a batched decode engine and the drivers that run on it.

Vocabulary, fixed once:
- ``alpha``: the power of the target ``pi(x) ∝ p(x)^alpha``; the proposal temperature is ``1/alpha``.
- ``logp_base``: log-probability of a token under the base model's untempered distribution p.
- ``logq_proposal``: log-probability of a token under the proposal q = softmax(logits / T).
- A *chain* is one (question, seed) trajectory; a *request* asks the engine for up to n tokens
  after a prefix of a chain's sequence; a *driver* is a generator that yields requests and
  decides what to do with their completions (power, dps, temperature, greedy).
"""
