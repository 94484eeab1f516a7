"""dps: power sampling and Dynamic Power Sampling for LLM reasoning.

The library API lives in `dps_cli.pipeline` (sample, collect, train, evaluate, passk); the
command-line app in `dps_cli.cli` is a thin layer over it.
"""

__version__ = "0.1.0"
