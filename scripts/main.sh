#!/usr/bin/env bash
# The README's main command: refresh .venv/ and run the main job on the embedded defaults.
# Until the benchmark lands (issue 5) the main job verifies the standard task suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/venv.sh"
cd "$root"
exec .venv/bin/cosmocore tasks verify --suite standard "$@"
