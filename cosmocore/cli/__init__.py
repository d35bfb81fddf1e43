"""The ``cosmocore`` command line (the console script ``cosmocore.cli:main``), its buffer
subcommands, the ``spark-submit`` entry point and the notebooks' helper."""
from cosmocore.cli.commands import app, main

__all__ = ["app", "main"]
