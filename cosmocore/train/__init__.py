"""The training cycle (day, tag, store, night, evaluate)."""
