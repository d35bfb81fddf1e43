"""The benchmark: arms x seeds x cycles, locally or spread over ranks."""
