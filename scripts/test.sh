#!/usr/bin/env bash
# The README's test command: refresh .venv/ and run the whole suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/venv.sh"
cd "$root"
exec .venv/bin/python -m pytest "$@"
