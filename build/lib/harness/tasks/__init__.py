"""Tasks: their data (HF datasets, Hub or local mirror) and their metrics (GLUE conventions)."""
