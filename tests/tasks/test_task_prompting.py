"""build_prompt: chat template vs raw text, and token ids that match the returned text."""

from __future__ import annotations

from typing import Any

import pytest

from dps_cli.tasks import get_task
from dps_cli.tasks.base import Question
from dps_cli.tasks.prompting import build_prompt
from tests.conftest import build_byte_tokenizer

MATH = Question(task="math500", id="m", text="What is $1+1$?", reference="2")
CODE = Question(
    task="humaneval",
    id="HumanEval/0",
    text="def f(x):\n",
    reference="    return x\n",
    extra={"prompt": "def f(x):\n", "test": "", "entry_point": "f"},
)
GPQA = Question(task="gpqa", id="g", text="Pick?", reference="r", choices=("r", "a", "b", "c"))


@pytest.fixture(scope="module")
def chat_tokenizer() -> Any:
    return build_byte_tokenizer(chat=True)


@pytest.fixture(scope="module")
def raw_tokenizer() -> Any:
    return build_byte_tokenizer(chat=False)


def test_chat_template_wraps_the_user_message(chat_tokenizer: Any) -> None:
    task = get_task("math500")
    text, ids = build_prompt(chat_tokenizer, task, MATH, None)
    message = task.user_message(MATH, None)
    assert text == f"<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n"
    im_start = chat_tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == im_start and ids.count(im_start) == 2  # specials are single ids
    assert chat_tokenizer.decode(ids) == text
    # three special tokens, one id each, plus one id per byte of everything else
    assert len(ids) == 3 + len(message.encode()) + len("user\n" + "\n" + "assistant\n")


def test_chat_template_is_used_even_when_the_task_prefers_raw(chat_tokenizer: Any) -> None:
    task = get_task("humaneval")
    text, _ = build_prompt(chat_tokenizer, task, CODE, None)
    assert text.startswith("<|im_start|>user\nComplete the following Python function.")


def test_raw_prompt_for_humaneval_is_the_function_prompt(raw_tokenizer: Any) -> None:
    text, ids = build_prompt(raw_tokenizer, get_task("humaneval"), CODE, None)
    assert text == "def f(x):\n"
    assert ids == raw_tokenizer.encode("def f(x):\n")
    assert len(ids) == len(text)  # byte tokenizer, no merges, no special tokens added


def test_raw_prompt_for_other_tasks_is_the_user_message(raw_tokenizer: Any) -> None:
    task = get_task("gpqa")
    order = (3, 2, 1, 0)
    text, ids = build_prompt(raw_tokenizer, task, GPQA, order)
    assert text == task.user_message(GPQA, order)
    assert text.startswith("Pick?\n\nA) c\nB) b\nC) a\nD) r\n")
    assert raw_tokenizer.decode(ids) == text


class RecordingTokenizer:
    """Records how it was called, to pin the special-token policy of each path."""

    def __init__(self, chat_template: str | None) -> None:
        self.chat_template = chat_template
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> str:
        assert kwargs == {"add_generation_prompt": True, "tokenize": False}
        return "<bos>" + conversation[0]["content"]

    def encode(self, text: str, **kwargs: Any) -> list[int]:
        self.calls.append((text, kwargs))
        return [1, 2, 3]


def test_special_tokens_are_added_only_without_a_template() -> None:
    chat = RecordingTokenizer("{{ template }}")
    assert build_prompt(chat, get_task("alpacaeval"), MATH, None) == (
        "<bos>What is $1+1$?",
        [1, 2, 3],
    )
    assert chat.calls == [("<bos>What is $1+1$?", {"add_special_tokens": False})]
    raw = RecordingTokenizer(None)
    build_prompt(raw, get_task("alpacaeval"), MATH, None)
    assert raw.calls == [("What is $1+1$?", {})]
