r"""Answer extraction and grading, one module per answer kind, with no model involved.

- `math`: ``\boxed{}`` extraction and symbolic equivalence through HF math-verify (MATH-500).
- `choice`: the chosen letter of a multiple-choice completion (GPQA).
- `integer`: the final integer of an arithmetic completion.
- `code`: the program in a code completion (HumanEval); `sandbox` runs it against its tests in a
  bubblewrap sandbox (`bubblewrap`), with the tests in a separate judge process (`sandbox_runner`).
"""
