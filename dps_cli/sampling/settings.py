"""The settings of a power-sampling chain, importable without numpy or torch."""

from __future__ import annotations

from dataclasses import dataclass

from dps_cli.config import AFTER_EOS_MODES, DEFAULT_AFTER_EOS


@dataclass(frozen=True)
class PowerSettings:
    """One chain's target and MH schedule; k comes from its policy, not from here."""

    alpha: float
    max_new_tokens: int
    blocks: int
    checkpoints: tuple[int, ...] = ()
    hidden: bool = False
    eos_token_ids: tuple[int, ...] = ()
    after_eos: str = DEFAULT_AFTER_EOS

    def __post_init__(self) -> None:
        if self.after_eos not in AFTER_EOS_MODES:
            raise ValueError(f"after_eos={self.after_eos!r} is not one of {AFTER_EOS_MODES}")
        if self.blocks < 1 or self.max_new_tokens % self.blocks:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} must be a positive multiple of "
                             f"blocks={self.blocks}")

    @property
    def block_size(self) -> int:
        return self.max_new_tokens // self.blocks

    def target_length(self, prompt_len: int, block: int) -> int:
        """L_b = c + b*S: the length a state may reach in block ``block`` (1-based)."""
        return prompt_len + block * self.block_size
