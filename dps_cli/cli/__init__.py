"""The Typer command-line layer: parse, validate, call one library function, render."""
