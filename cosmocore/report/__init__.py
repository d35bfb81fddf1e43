"""Metrics from the store, the benchmark report (Markdown, HTML, plots) and MLflow logging."""
