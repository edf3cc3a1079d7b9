"""DatasetIO: Llama Stack datasets stored as Parquet parts under the data directory, rows served by pages."""
