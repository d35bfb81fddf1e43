#!/usr/bin/env bash
# The README's main command: refresh .venv/ and run the main job on the embedded defaults.
# The main job is the bug-recurrence benchmark, quick profile (the default model on the CPU);
# extra arguments go to `cosmocore bench` (e.g. --profile smoke, --resume RUN_DIR).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/venv.sh"
cd "$root"
exec .venv/bin/cosmocore bench "$@"
