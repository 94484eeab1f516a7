"""Multiple-choice answers: find the letter a completion settled on (GPQA)."""

from __future__ import annotations

import re

from dps_cli.tasks.grading.math import extract_boxed

# \text{B}, \textbf{(B)}, \mathrm{B}: unwrap to the inside before reading the letter.
_TEXT_WRAPPER_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf)\s*\{([^{}]*)\}")


def extract_choice_letter(completion: str, letters: str = "ABCD") -> str | None:
    r"""Return the choice letter (one of ``letters``) that ``completion`` answers, or None.

    Tried in order, the first rule that finds a letter wins:

    1. the last ``\boxed{}`` whose content is a letter, optionally in parentheses or in
       ``\text{}``/``\textbf{}`` and optionally followed by the option text
       (``\boxed{B}``, ``\boxed{(B)}``, ``\boxed{\text{B}}``, ``\boxed{B) 42}``);
    2. the last answer phrase: "the answer is (B)", "answer is: B", "Answer: **B**",
       "correct option is B" (case-insensitive wording, capital letter);
    3. the last standalone capital letter among ``letters`` (word boundaries on both sides), which
       can misread the article "A" in prose; it is the last resort for terse completions.
    """
    if not letters or not all(len(letter) == 1 and letter.isupper() for letter in letters):
        raise ValueError(f"letters={letters!r} must be capital letters, such as 'ABCD'")
    group = f"[{re.escape(letters)}]"
    boxed = extract_boxed(completion)
    if boxed is not None:
        inner = _TEXT_WRAPPER_RE.sub(r"\1", boxed).strip()
        match = re.match(rf"\(?\s*({group})\s*\)?(?:$|[\s.:)])", inner)
        if match:
            return match.group(1)
    phrase = re.compile(
        rf"(?i:answer|option|choice)[*_]*\s*(?:(?i:is)\b\s*:?|:)\s*[*_$]*\s*"
        rf"(?:(?i:option|choice)\s+)?\(?\s*({group})\b(?!')"
    )
    phrases = list(phrase.finditer(completion))
    if phrases:
        return phrases[-1].group(1)
    standalone = list(re.finditer(rf"\b({group})\b(?!')", completion))
    return standalone[-1].group(1) if standalone else None
