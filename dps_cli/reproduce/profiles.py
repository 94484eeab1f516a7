"""The scales `make reproduce` runs at: a 30-minute CPU profile and the paper's GPU profile.

A profile fixes everything but the task and the machine: model, sampling settings, how many
questions go to training (fixed-k runs, controllers) and how many are held out (the table),
seeds, and how hard the controllers train. Both splits are contiguous slices of the task's
questions in data order: train = ``[0, train_questions)``, test =
``[train_questions, train_questions + test_questions)``, so no question is in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dps_cli.config import (
    EMBEDDED_MODEL,
    K_SCHEDULE,
    PAPER_ALPHA,
    PAPER_BLOCKS,
    PAPER_MAX_NEW_TOKENS,
)
from dps_cli.errors import UserError


@dataclass(frozen=True)
class Profile:
    """One scale of the reproduction; see the module docstring for the split."""

    name: str
    model: str
    max_new_tokens: int
    blocks: int
    checkpoints: tuple[int, ...]
    hidden_layer: int
    seeds: tuple[int, ...]
    train_questions: int
    test_questions: int
    batch_size: int | None
    alpha: float = PAPER_ALPHA
    #: The fixed-k runs that train the controllers; collect labels every k against the last one.
    ladder: tuple[int, ...] = K_SCHEDULE.ladder()
    gbdt_iterations: int = 1000
    mlp_epochs: int = 200
    train_threads: int = 1
    slurm_shards: int = 1
    sbatch: dict[str, str] = field(default_factory=dict)
    #: Seeds of the held-out temperature run: enough samples for majority voting to reach the
    #: tokens per question of fixed k (empty: ``seeds``).
    vote_seeds: tuple[int, ...] = ()
    #: Share of the training questions each controller holds out for its metrics and tau sweep.
    controller_test_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.train_questions < 3 or self.test_questions < 1:
            raise UserError(
                f"Profile {self.name!r} needs at least 3 training and 1 test question "
                f"(has {self.train_questions} and {self.test_questions}).",
            )
        if self.max_new_tokens % self.blocks:
            raise UserError(
                f"Profile {self.name!r}: max_new_tokens {self.max_new_tokens} must be divisible "
                f"by blocks {self.blocks}.",
            )
        if self.ladder[-1] != K_SCHEDULE.max:
            raise UserError(f"Profile {self.name!r}: the ladder must end at k={K_SCHEDULE.max}.")
        if not 0.0 < self.controller_test_fraction < 1.0:
            raise UserError(f"Profile {self.name!r}: controller_test_fraction must lie in (0, 1).")

    @property
    def baseline_k(self) -> int:
        """The fixed-k baseline of the table: the top of the ladder, the reference of the labels."""
        return self.ladder[-1]

    @property
    def temperature(self) -> float:
        """The low-temperature baseline samples at 1/alpha, the proposal temperature."""
        return 1.0 / self.alpha

    @property
    def temperature_seeds(self) -> tuple[int, ...]:
        """Seeds of the held-out temperature run (the voting baselines' samples)."""
        return self.vote_seeds or self.seeds

    @property
    def smc_particles(self) -> int:
        """N of the held-out Power-SMC run: as many full completions as one fixed-k chain spends
        tokens, 1 + k (B + 1) / 4 (the cost model of the CPU budget below); 11 for k = 8 in 4
        blocks, 35 in the paper's 16. Both stop early at EOS, so the table shows the two
        measured tokens / question side by side."""
        return round(1 + self.baseline_k * (self.blocks + 1) / 4)

    @property
    def test_offset(self) -> int:
        """Held-out questions start right after the training ones."""
        return self.train_questions


# CPU budget (2 cores, embedded SmolLM2-135M). Power sampling costs about M + k*M*(B+1)/4
# tokens per chain: each of the k proposals per block resamples on average half of the current
# length. With M=48, B=4 that is 48 + 60k: k=2: 168, k=4: 288, k=6: 408, k=8: 528 tokens.
# Measured on arith: chains stop at EOS early, so a chain costs ~0.7x the formula; the engine
# sustained ~120 tokens/s with 24 chains on two idle cores (M=32: the whole pipeline took 240 s)
# and as little as ~14 tokens/s on a box shared with other jobs. We budget for the 64 tokens/s
# of plain decoding with 16 chains:
#   train: 16 questions x 2 seeds = 32 chains x (168+288+408+528 = 1392) x 0.7 = 31,200 tokens
#   test:  16 questions x 2 seeds = 32 chains x (k=8 528 + 3 DPS runs ~340 + temperature 48)
#          x 0.7 = 35,700 tokens
#   total ~67,000 tokens: ~1,050 s at 64 tokens/s (~560 s at 120). Add the one-time GGUF
#   conversion (~40 s), model loads (9 runs x ~3 s), grading and three small controllers
#   (~30 s): ~1,150 s, leaving ~35% of the 30 minutes as margin.
CPU = Profile(
    name="cpu",
    model=EMBEDDED_MODEL,
    max_new_tokens=48,
    blocks=4,
    checkpoints=(1, 2, 3),
    hidden_layer=11,
    seeds=(0, 1),
    train_questions=16,
    test_questions=16,
    batch_size=32,
    gbdt_iterations=300,
    mlp_epochs=100,
    train_threads=2,
    sbatch={"cpus-per-task": "2", "mem": "8G"},  # SLURM=1: a CPU node, no GPU
    # a k=8 chain costs ~528 tokens, a plain sample at most 48: majority voting needs ~11
    # samples to spend as much; 16 leave room for samples that stop early (~8k tokens, ~2 min)
    vote_seeds=tuple(range(16)),
)

# Sized so that a controller's held-out ROC-AUC interval (grouped bootstrap over questions,
# `dps_cli.controllers.evidence`) is narrow enough to decide whether it beats chance: a 95%
# half-width of about 0.1. Why this size: the rows of one question are correlated, so the unit
# is the question. For an AUC near 0.6 the Hanley-McNeil variance, counted in questions, is
# about 0.069 / n_neg + 0.09 / n_pos, where n_neg (n_pos) are held-out questions carrying a
# "not enough" ("enough") label; a half-width of 0.1 (SE 0.051) needs n_neg >= ~30 with
# n_pos ~80. A question carries a "not enough" label only when some seed is right at k=8 and
# wrong at a lower k; with SmolLM2 on arith (~20% accuracy) that is ~10% of (question, seed)
# pairs, so ~35-40% of questions with 4 seeds. Hence all 200 arith questions: 160 train the
# controllers, of which each holds out half (80 questions, ~30 with "not enough"), and 40 give
# the table; 4 seeds. Cost: ~12x the tokens of `cpu` (160 x 4 chains per k instead of 16 x 2,
# plus 40 x 4 held-out), i.e. about 1.5-2.5 hours on 2 idle cores.
# Measured (2026-11-27, docs/results.md): ~1 h 40 min idle, but only 6.4% of pairs and
# 17% of questions carried "not enough" (13 held-out), so the intervals came out 0.22-0.36 wide:
# SmolLM2 gets k=8 right on too few arith questions for this profile to decide. Kept as run.
CPU_LARGE = Profile(
    name="cpu-large",
    model=EMBEDDED_MODEL,
    max_new_tokens=48,
    blocks=4,
    checkpoints=(1, 2, 3),
    hidden_layer=11,
    seeds=(0, 1, 2, 3),
    train_questions=160,
    test_questions=40,
    batch_size=32,
    gbdt_iterations=300,
    mlp_epochs=100,
    train_threads=2,
    sbatch={"cpus-per-task": "2", "mem": "8G"},
    vote_seeds=tuple(range(16)),
    controller_test_fraction=0.5,
)

# A smoke test of the whole pipeline, e.g. on a new cluster (`make reproduce PROFILE=smoke
# SLURM=1`): 3 training and 2 held-out questions, one seed, 8 new tokens in 2 blocks, one
# array task per run asking for 1 CPU. Minutes on the embedded model; the Slurm tests run it on a tiny
# random model (--model DIR). Its numbers mean nothing.
SMOKE = Profile(
    name="smoke",
    model=EMBEDDED_MODEL,
    max_new_tokens=8,
    blocks=2,
    checkpoints=(1,),
    hidden_layer=1,
    seeds=(0,),
    train_questions=3,
    test_questions=2,
    batch_size=8,
    gbdt_iterations=10,
    mlp_epochs=2,
    train_threads=1,
    sbatch={"cpus-per-task": "1", "mem": "2G"},
)

# The paper's setting (DPS paper / Karan & Du 2025): Qwen2.5-Math-7B on MATH500, alpha 4,
# 3072 new tokens in 16 blocks, checkpoints after blocks 2, 4 and 8, 8 seeds, k up to 8.
# MATH500 is split 250/250 by data order: the first 250 problems train the controllers, the
# last 250 give the table. Layer 11 of Qwen2.5-Math-7B's 28 is the hidden-state layer.
PAPER = Profile(
    name="paper",
    model="Qwen/Qwen2.5-Math-7B",
    max_new_tokens=PAPER_MAX_NEW_TOKENS,
    blocks=PAPER_BLOCKS,
    checkpoints=(2, 4, 8),
    hidden_layer=11,
    seeds=tuple(range(8)),
    train_questions=250,
    test_questions=250,
    batch_size=None,  # the default for the device (config.DEFAULT_BATCH)
    train_threads=8,
    slurm_shards=8,
    sbatch={"gres": "gpu:1", "cpus-per-task": "8", "mem": "64G", "time": "24:00:00"},
    # a k=8 chain costs ~3072 x (1 + 8 x 17/4) ~ 107k tokens, a plain sample at most 3072: ~35
    vote_seeds=tuple(range(48)),
)

PROFILES: dict[str, Profile] = {
    profile.name: profile for profile in (CPU, CPU_LARGE, PAPER, SMOKE)
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; UserError naming the choices otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise UserError(
            f"Unknown profile {name!r}.", f"Use one of: {', '.join(PROFILES)}."
        ) from None
