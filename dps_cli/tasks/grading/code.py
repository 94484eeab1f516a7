"""Code answers: turn a HumanEval completion into the program to test.

The tests themselves run in `dps_cli.tasks.grading.sandbox`; its public names are re-exported here
so a task can import everything code grading needs from one module.
"""

from __future__ import annotations

import re

from dps_cli.tasks.grading.sandbox import ExecResult, run_many, run_tests

__all__ = ["ExecResult", "extract_program", "run_many", "run_tests"]

#: Where a raw continuation of the prompt stops being the function body (the Codex stop set).
STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")

# An opening fence with an optional language tag, the code, then a closing fence or the end of
# the text (a truncated completion).
_FENCE_RE = re.compile(r"```[ \t]*[\w+-]*[^\n]*\n(?P<code>.*?)(?:```|\Z)", re.DOTALL)
_MAIN_GUARD_RE = re.compile(r"^if\s+__name__\s*==.*", re.MULTILINE | re.DOTALL)


def extract_program(completion: str, prompt: str, entry_point: str) -> str:
    """Return the program to test for ``completion``, an answer to the HumanEval ``prompt``.

    - Fenced code (```` ```python ... ``` ```` or a bare ```` ``` ````, the closing fence
      optional at the end of the text): take the block that defines ``def entry_point(``, else
      the first block. A block that does not define it is the function body, so it goes after
      the prompt. A block that defines it goes after the prompt too, so that the prompt's imports
      and helper functions exist; the block's definition replaces the prompt's stub (the prompt
      ends with a signature and docstring, which is a valid function on its own).
    - No fence, but a top-level ``def entry_point(`` in the completion: the completion is a whole
      program and is used like a fenced block.
    - Otherwise the completion is the raw continuation of the prompt: prompt + completion, cut
      at the first `STOP_SEQUENCES` (a new top-level ``def``, ``class``, ``if __name__``,
      ``print(`` or ``#`` comment), which ends the function body. Helpers defined after the
      entry point are cut too, as with the usual Codex stop sequences.

    In the first two cases a trailing ``if __name__ == ...:`` section is dropped, so the
    completion's own demo code (``input()``, printing) does not run before the tests.
    """
    definition = re.compile(rf"^[ \t]*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.M)
    blocks = [match.group("code") for match in _FENCE_RE.finditer(completion)]
    if blocks:
        chosen = next((block for block in blocks if definition.search(block)), blocks[0])
        return _after_prompt(prompt, _MAIN_GUARD_RE.sub("", chosen))
    if re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", completion, re.M):
        return _after_prompt(prompt, _MAIN_GUARD_RE.sub("", completion))
    return prompt + _cut_at_stop(completion)


def _after_prompt(prompt: str, code: str) -> str:
    """Return ``code`` placed after ``prompt`` on a new line."""
    separator = "" if not prompt or prompt.endswith("\n") else "\n"
    return f"{prompt}{separator}{code}"


def _cut_at_stop(continuation: str) -> str:
    """Return ``continuation`` up to the first stop sequence (the end of the function body)."""
    cut = len(continuation)
    for stop in STOP_SEQUENCES:
        index = continuation.find(stop)
        if index != -1:
            cut = min(cut, index)
    return continuation[:cut]
