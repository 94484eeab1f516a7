"""The scales `make reproduce` runs at: a 30-minute CPU profile and the paper's GPU profile.

A profile fixes everything but the task and the machine: model, sampling settings, how many
questions go to training (fixed-k runs, controllers) and how many are held out (the table),
seeds, and how hard the controllers train. Both splits are contiguous slices of the task's
questions in data order: train = ``[0, train_questions)``, test =
``[train_questions, train_questions + test_questions)``, so no question is in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dps_cli.config import PAPER_ALPHA, PAPER_BLOCKS, PAPER_MAX_NEW_TOKENS
from dps_cli.errors import UserError

#: The fixed-k ladder of the training runs; collect labels every k against the last one.
LADDER = (2, 4, 6, 8)
#: The controller kinds the paper compares, in the table's order.
CONTROLLER_KINDS = ("gbdt", "mlp-h", "mlp-hq")


@dataclass(frozen=True)
class Profile:
    """One scale of the reproduction; see the module docstring for the split."""

    name: str
    model: str
    alpha: float
    max_new_tokens: int
    blocks: int
    checkpoints: tuple[int, ...]
    hidden_layer: int
    seeds: tuple[int, ...]
    train_questions: int
    test_questions: int
    batch_size: int | None
    baseline_k: int = 8
    ladder: tuple[int, ...] = LADDER
    gbdt_iterations: int = 1000
    mlp_epochs: int = 200
    train_threads: int = 1
    slurm_shards: int = 1
    sbatch: dict[str, str] = field(default_factory=dict)
    description: str = ""

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
        if self.ladder[-1] != self.baseline_k:
            raise UserError(f"Profile {self.name!r}: the ladder must end at k={self.baseline_k}.")

    @property
    def temperature(self) -> float:
        """The low-temperature baseline samples at 1/alpha, the proposal temperature."""
        return 1.0 / self.alpha

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
    model="smollm2-135m",
    alpha=4.0,
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
    description="embedded SmolLM2-135M on 2 CPU cores, 48 new tokens, 10-20 minutes",
)

# The paper's setting (DPS paper / Karan & Du 2025): Qwen2.5-Math-7B on MATH500, alpha 4,
# 3072 new tokens in 16 blocks, checkpoints after blocks 2, 4 and 8, 8 seeds, k up to 8.
# MATH500 is split 250/250 by data order: the first 250 problems train the controllers, the
# last 250 give the table. Layer 11 of Qwen2.5-Math-7B's 28 is the hidden-state layer.
PAPER = Profile(
    name="paper",
    model="Qwen/Qwen2.5-Math-7B",
    alpha=PAPER_ALPHA,
    max_new_tokens=PAPER_MAX_NEW_TOKENS,
    blocks=PAPER_BLOCKS,
    checkpoints=(2, 4, 8),
    hidden_layer=11,
    seeds=tuple(range(8)),
    train_questions=250,
    test_questions=250,
    batch_size=None,  # the engine's default for the device (64 on CUDA)
    train_threads=8,
    slurm_shards=8,
    sbatch={"gres": "gpu:1", "cpus-per-task": "8", "mem": "64G", "time": "24:00:00"},
    description="Qwen2.5-Math-7B, paper settings, GPU",
)

PROFILES: dict[str, Profile] = {profile.name: profile for profile in (CPU, PAPER)}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; UserError naming the choices otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise UserError(
            f"Unknown profile {name!r}.", f"Use one of: {', '.join(PROFILES)}."
        ) from None
