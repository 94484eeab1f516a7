"""Integer answers: the final integer of an arithmetic completion, compared exactly."""

from __future__ import annotations

import re

from dps_cli.tasks.grading.math import extract_boxed

# An integer with optional sign and "1,234"-style thousands separators, not part of a word, a
# decimal ("3.5") or a longer number. The sign must not follow a word character ("5-3" is 3).
_INTEGER = r"(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?![\w]|\.\d|,\d{3})"
_INTEGER_RE = re.compile(_INTEGER)
_WHOLE_INTEGER_RE = re.compile(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.0+)?")
_ANSWER_PHRASE_RE = re.compile(rf"answer(?:\s+is|\s*:)\s*[*_$]*\s*(?P<n>{_INTEGER})", re.IGNORECASE)
# "... = 42" at the very end of the text (allowing a closing period, "$" or markdown bold).
_TRAILING_EQUALS_RE = re.compile(rf"=\s*[*_$]*\s*(?P<n>{_INTEGER})\s*[*_$]*\s*\.?\s*$")
# Decoration a boxed integer may carry: $, \!, \,, spaces, \text{...} units.
_BOX_NOISE_RE = re.compile(r"\\text\{[^{}]*\}|\\mathrm\{[^{}]*\}|\\[!,;:]|[\s$]")


def extract_integer_answer(completion: str) -> str | None:
    r"""Return the final integer of ``completion`` normalized ("-1,234" gives "-1234"), or None.

    Tried in order, the first rule that finds an integer wins:

    1. the last ``\boxed{}`` if its content is one integer, possibly after ``x =`` and with
       decoration (``$``, ``\!``, ``\text{}`` units, a ``.0`` fraction);
    2. the last "answer is N" / "answer: N" phrase;
    3. "= N" ending the text;
    4. the last integer anywhere in the text.

    Negative numbers, a unicode minus and thousands separators are handled; decimals such as
    "3.5" are not integers and are skipped by rules 2-4.
    """
    boxed = extract_boxed(completion)
    if boxed is not None:
        content = _BOX_NOISE_RE.sub("", boxed.rsplit("=", 1)[-1])
        if _WHOLE_INTEGER_RE.fullmatch(content):
            return _normalize(content)
    for pattern in (_ANSWER_PHRASE_RE, _TRAILING_EQUALS_RE):
        matches = list(pattern.finditer(completion))
        if matches:
            return _normalize(matches[-1].group("n"))
    numbers = _INTEGER_RE.findall(completion)
    return _normalize(numbers[-1]) if numbers else None


def _normalize(number: str) -> str:
    """Return the canonical form of an integer literal: no separators, "+" or leading zeros."""
    digits = re.sub(r"\.0+$", "", number.replace(",", "").replace("−", "-"))
    return str(int(digits))


def integer_equal(prediction: str | None, reference: str) -> bool:
    """Return True when ``prediction`` is the same integer as ``reference``.

    ``prediction`` is normally `extract_integer_answer` output; None or text that is not one
    integer is simply wrong. A ``reference`` that is not an integer is a data error and raises
    ValueError.
    """
    if not _WHOLE_INTEGER_RE.fullmatch(reference.strip()):
        raise ValueError(f"reference {reference!r} is not an integer")
    if prediction is None or not _WHOLE_INTEGER_RE.fullmatch(prediction.strip()):
        return False
    return _normalize(prediction.strip()) == _normalize(reference.strip())
