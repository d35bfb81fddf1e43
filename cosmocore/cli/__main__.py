"""``python -m cosmocore.cli``: the same command line as the ``cosmocore`` console script."""
from cosmocore.cli.commands import main

main()
