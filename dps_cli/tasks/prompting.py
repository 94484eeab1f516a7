"""Turning a task's question into the exact token ids the model is conditioned on.

The prompt is tokenized once, here, and its ids travel with the chain to the end: decoding and
re-tokenizing could change the sequence the sampler's target distribution is defined on.
"""

from __future__ import annotations

from typing import Any, Protocol

from dps_cli.tasks.base import Question, Task


class PromptTokenizer(Protocol):
    """The part of a Hugging Face tokenizer the prompt builder uses."""

    chat_template: Any

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any:
        """Render a conversation with the model's template."""
        ...

    def encode(self, text: str, **kwargs: Any) -> list[int]:
        """Text -> token ids."""
        ...


def build_prompt(
    tokenizer: PromptTokenizer,
    task: Task,
    question: Question,
    choice_order: tuple[int, ...] | None,
) -> tuple[str, list[int]]:
    """The prompt text and its token ids for ``question``.

    With a chat template: the user message rendered with the generation prompt appended, then
    encoded without adding special tokens (the template already holds any BOS it wants). Without
    one: the raw text — the bare question for tasks that prefer continuing it (HumanEval's
    function prompt), else the user message — encoded with the tokenizer's default special
    tokens, as a base model saw text in pre-training.
    """
    message = task.user_message(question, choice_order)
    return message_prompt(tokenizer, message, raw=question.text if task.prefers_raw_prompt else None)


def message_prompt(
    tokenizer: PromptTokenizer, message: str, raw: str | None = None
) -> tuple[str, list[int]]:
    """One user ``message`` as prompt text and token ids (see `build_prompt`).

    Without a chat template the text is ``raw`` (default: ``message``), encoded with the
    tokenizer's default special tokens.
    """
    if tokenizer.chat_template:
        messages = [{"role": "user", "content": message}]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if not isinstance(text, str):
            raise TypeError(f"apply_chat_template returned {type(text).__name__}, not str")
        return text, list(tokenizer.encode(text, add_special_tokens=False))
    text = message if raw is None else raw
    return text, list(tokenizer.encode(text))
