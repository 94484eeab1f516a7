"""The run store: a manifest plus Parquet parts of sample rows per run directory."""
