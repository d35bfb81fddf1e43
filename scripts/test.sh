#!/usr/bin/env bash
# The README's test command: refresh .venv/ and run the whole suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/venv.sh"
cd "$root"
# Two workers (pytest-xdist): most tests wait on Spark, a subprocess or a JVM start, so two share
# two cores well. --dist loadscope keeps each module on one worker (its fixtures are built once),
# handed out in the order tests/conftest.py sorts them (longest first). Add -n 0 for one process.
exec .venv/bin/python -m pytest -n 2 --dist loadscope --no-loadscope-reorder "$@"
