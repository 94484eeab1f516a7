r"""Math answers: pull the final answer out of a completion and check it against the reference.

Equivalence is decided by HF math-verify (``parse`` + ``verify``: numbers, fractions, tuples,
intervals, sets, matrices, equations) after a normalization pre-pass that removes what
math-verify reads as mathematics but graders treat as decoration: units in ``\text{}`` or
``\mbox{}``, degree signs, ``\%``, ``\$``, ``\!`` and ``\left``/``\right``, thousands
separators, and the parentheses of a choice letter ``(B)``.

Time limit: math-verify guards itself with ``signal.alarm`` per parse and per comparison, which
only works on the main thread. `math_equal` switches those off and enforces one limit for the
whole item itself: on the main thread with an interval timer (``signal.setitimer``), elsewhere by
running the item in a child process of a ``forkserver`` context (fork-safe in a threaded parent;
the server preloads this module) that is killed when it overruns. The child path costs about
0.1 s per item against a few milliseconds on the main thread, so grade math from the main thread
when you can. Like any multiprocessing start method but fork, it needs scripts that grade from
threads to guard their top level with ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import signal
import threading
import time
from multiprocessing.connection import Connection

logger = logging.getLogger(__name__)

#: Extra seconds a child process gets beyond the item limit (fork, first server start, unpickling).
CHILD_GRACE_S = 5.0

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# "The final answer is X", "the answer is X", "Final answer: X"; X runs to the end of the line.
_ANSWER_PHRASE_RE = re.compile(
    r"(?:final\s+answer|the\s+answer)\s*(?:is\s*:?|:)\s*(?P<rest>[^\n]*)", re.IGNORECASE
)
# A line that starts with "Answer:" (optionally in markdown bold).
_ANSWER_LINE_RE = re.compile(r"^\W*answer\W*:\s*(?P<rest>[^\n]*)", re.IGNORECASE | re.MULTILINE)
_MATH_SPAN_RE = re.compile(r"\$\$?(?P<m>[^$]+?)\$\$?|\\\((?P<p>.+?)\\\)|\\\[(?P<b>.+?)\\\]")
_TEXT_CMD = r"\\(?:text|textbf|textit|textrm|mbox|mathrm)"
_WHOLE_TEXT_RE = re.compile(rf"{_TEXT_CMD}\s*\{{(?P<c>[^{{}}]*)\}}")
_TRAILING_UNIT_RE = re.compile(rf"\s*{_TEXT_CMD}\s*\{{\s*[A-Za-z][A-Za-z .]*\}}(?:\^\{{?\d\}}?)?$")
_PLAIN_UNIT_RE = re.compile(r"^(?P<num>[-+]?[\d.,/]*\d)\s+[A-Za-z][A-Za-z .]*(?:\^\{?\d\}?)?$")
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_CHOICE_RE = re.compile(r"\(\s*(?P<l>[A-Z])\s*\)")
_REPLACEMENTS = (
    (re.compile(r"\\[dt]frac(?![A-Za-z])"), r"\\frac"),
    (re.compile(r"\\!"), ""),
    (re.compile(r"\\[,;:]|~"), " "),
    (re.compile(r"\\(?:left|right)(?![A-Za-z])"), ""),
    (
        re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ(?![A-Za-z])|°|\\degree(?![A-Za-z])"),
        "",
    ),
    (re.compile(r"\\%|%"), ""),
    (re.compile(r"\\\$"), ""),
)


class _Deadline(BaseException):
    """Raised by the interval timer; a BaseException so math-verify's handlers let it through."""


def extract_boxed(text: str) -> str | None:
    r"""Return the content of the last well-formed ``\boxed{...}`` or ``\fbox{...}`` in ``text``.

    Nested braces are matched (``\boxed{\frac{1}{2}}`` gives ``\frac{1}{2}``) and escaped braces
    ``\{``/``\}`` are skipped while counting. ``\boxed 5`` (no braces) gives the token after the
    space. A box left unclosed (a truncated completion) is ignored in favour of an earlier one.
    Returns None when there is no usable box; an empty box gives ``""``.
    """
    found: str | None = None
    for match in _BOX_RE.finditer(text):
        content = _box_content(text, match.end())
        if content is not None:
            found = content
    return found


def _box_content(text: str, pos: int) -> str | None:
    """Return the argument of the box command ending at ``pos`` (None: unbalanced or absent)."""
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    if pos >= len(text):
        return None
    if text[pos] != "{":
        token = re.match(r"[^\s${}]+", text[pos:])
        return token.group(0) if token else None
    depth, i = 0, pos
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[pos + 1 : i].strip()
        i += 1
    return None


def extract_math_answer(completion: str) -> str | None:
    r"""Return the final answer of a math completion, or None when it states none.

    Tried in order, the first that yields a non-empty answer wins:

    1. the last ``\boxed{}``/``\fbox{}`` (`extract_boxed`);
    2. the last "final answer is X" / "the answer is X" / "final answer: X" phrase;
    3. the last line starting with "Answer: X".

    For 2 and 3, X is the first ``$...$``, ``\(...\)`` or ``\[...\]`` span after the phrase if
    there is one, else the rest of the sentence. Deliberately no "last number" or "last ``$...$``"
    fallback: a completion without a stated answer (often a truncated one) should grade as
    unanswered rather than by whatever expression it happened to end on.
    """
    boxed = extract_boxed(completion)
    if boxed:
        return boxed
    for pattern in (_ANSWER_PHRASE_RE, _ANSWER_LINE_RE):
        matches = list(pattern.finditer(completion))
        if matches:
            answer = _answer_from_phrase(matches[-1].group("rest"))
            if answer:
                return answer
    return None


def _answer_from_phrase(rest: str) -> str | None:
    """Return the answer after "the answer is": a math span, else the rest of the sentence."""
    span = _MATH_SPAN_RE.search(rest)
    if span:
        inner = span.group("m") or span.group("p") or span.group("b") or ""
        return inner.strip() or None
    sentence = re.split(r"\.(?:\s|$)", rest.replace("*", ""), maxsplit=1)[0]
    return sentence.strip().rstrip(".").strip() or None


def normalize_math_answer(answer: str) -> str:
    """Rewrite ``answer`` so that decoration does not count: see the module docstring for the list.

    Used on both sides of `math_equal`; exposed so the equality cases can be tested directly.
    """
    text = answer.strip()
    span = _MATH_SPAN_RE.fullmatch(text)
    if span:
        text = (span.group("m") or span.group("p") or span.group("b") or "").strip()
    for pattern, replacement in _REPLACEMENTS:
        text = pattern.sub(replacement, text)
    text = text.strip().rstrip(".").strip()
    whole_text = _WHOLE_TEXT_RE.fullmatch(text)
    if whole_text:
        text = whole_text.group("c").strip()
    elif _TRAILING_UNIT_RE.search(text) and not _TRAILING_UNIT_RE.fullmatch(text):
        text = _TRAILING_UNIT_RE.sub("", text).strip()
    plain_unit = _PLAIN_UNIT_RE.fullmatch(text)
    if plain_unit:
        text = plain_unit.group("num")
    if _THOUSANDS_RE.fullmatch(re.sub(r"\s+", "", text)):
        text = re.sub(r"[\s,]", "", text)
    choice = _CHOICE_RE.fullmatch(text)
    if choice:
        text = choice.group("l")
    return text


def math_equal(prediction: str, reference: str, timeout_s: float = 5.0) -> bool:
    r"""Return True when ``prediction`` is mathematically equal to ``reference``.

    Both are answers (e.g. `extract_math_answer` output and the dataset's answer), not whole
    completions. After `normalize_math_answer`, identical strings (ignoring whitespace) are equal
    without parsing, which also covers text answers such as ``\text{Evelyn}``; otherwise both are
    parsed as ``\boxed{...}`` with math-verify and compared with ``verify(gold, prediction)``.
    An item that exceeds ``timeout_s`` seconds counts as unequal (logged as a warning); the limit
    cannot interrupt a single long-running C call on the main thread, only the child process path
    is hard-killed.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s={timeout_s} must be positive")
    pred, ref = normalize_math_answer(prediction), normalize_math_answer(reference)
    if not pred or not ref:
        return False
    if re.sub(r"\s+", "", pred) == re.sub(r"\s+", "", ref):
        return True
    if threading.current_thread() is threading.main_thread():
        return _verify_with_timer(pred, ref, timeout_s)
    return _verify_in_child(pred, ref, timeout_s)


class _DropTimeoutDisabledWarning(logging.Filter):
    """Hides math-verify's one-off "Timeout is disabled" warning: `math_equal` enforces its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


def _verify_unbounded(pred: str, ref: str) -> bool:
    """math-verify with its own signal timeouts off (the caller bounds the time)."""
    from math_verify import parse, verify

    quiet = _DropTimeoutDisabledWarning()
    loggers = [logging.getLogger(f"math_verify.{name}") for name in ("parser", "grader")]
    for mv_logger in loggers:
        mv_logger.addFilter(quiet)
    try:
        gold = parse(f"\\boxed{{{ref}}}", parsing_timeout=0)
        if not gold:
            return False
        target = parse(f"\\boxed{{{pred}}}", parsing_timeout=0)
        return bool(target) and bool(verify(gold, target, timeout_seconds=0))
    finally:
        for mv_logger in loggers:
            mv_logger.removeFilter(quiet)


def _verify_with_timer(pred: str, ref: str, timeout_s: float) -> bool:
    """Run `_verify_unbounded` under ITIMER_REAL; restores any timer/handler that was set before."""

    def on_alarm(signum: int, frame: object) -> None:
        raise _Deadline

    start = time.monotonic()
    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        try:
            return _verify_unbounded(pred, ref)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Deadline:
        logger.warning("math_equal gave up after %.1f s on %r vs %r", timeout_s, pred, ref)
        return False
    finally:
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:
            remaining = max(old_delay - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, remaining, old_interval)


def _verify_in_child(pred: str, ref: str, timeout_s: float) -> bool:
    """Run the comparison in a forkserver child; kill it when it overruns the limit plus grace."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "math_verify"])  # no-op once the server runs
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(pred, ref, timeout_s, sender), daemon=True)
    process.start()
    sender.close()
    try:
        if receiver.poll(timeout_s + CHILD_GRACE_S):
            return bool(receiver.recv())
        logger.warning("math_equal child overran %.1f s on %r vs %r", timeout_s, pred, ref)
        return False
    except EOFError:  # the child ended without answering
        process.join()
        if process.exitcode is not None and process.exitcode > 0:
            raise RuntimeError(
                f"math_equal's child process failed (exit code {process.exitcode}); see its "
                "traceback above. A script that grades from threads needs an "
                "`if __name__ == '__main__':` guard (multiprocessing forkserver rule)."
            ) from None
        logger.warning("math_equal child was killed on %r vs %r", pred, ref)
        return False
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join()


def _child_main(pred: str, ref: str, timeout_s: float, sender: Connection) -> None:
    """Entry point of the child process: its main thread can use the interval timer."""
    sender.send(_verify_with_timer(pred, ref, timeout_s))
    sender.close()
