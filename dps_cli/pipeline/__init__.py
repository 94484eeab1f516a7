"""The library API behind each command, as plain functions usable from Python.

``evaluate`` (grade_run, summarize_run, evaluate_runs) and ``passk`` (passk_table) read runs
through `dps_cli.runs.store.RunStore`; modules are imported on use so that importing this package
stays cheap.
"""
