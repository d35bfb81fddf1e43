"""benchmarks/train_throughput.py end to end on the tiny model with tiny sizes (no Spark needed)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts Spark, a model or a subprocess

ROOT = Path(__file__).resolve().parents[3]


def test_train_throughput_prints_one_json_with_positive_rates(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--json", "--model", "tiny",
         "--device", "cpu", "--batch", "2", "--completion-tokens", "6", "--repeats", "1"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout[-2000:]  # stdout carries the JSON object and nothing else
    out = json.loads(lines[0])
    for key in ("nocturnal_tokens_per_s", "trl_tokens_per_s", "ratio", "generation_tokens_per_s",
"nocturnal_total_tokens_per_s", "trl_total_tokens_per_s", "nocturnal_bf16_tokens_per_s",
                "bf16_autocast_speedup"):
        assert isinstance(out[key], float) and out[key] > 0, key
    assert out["device"] == "cpu" and out["model"] == "tiny" and out["batch"] == 2
    assert 2 <= out["completion_tokens"] <= 2 * 6 and out["prompt_tokens"] > 0
    assert out["trl_measure"] and out["nocturnal_measure"] and out["nocturnal_bf16_measure"]
    assert isinstance(out["native_bf16"], bool)
    assert out["trl_activation_checkpointing"] is False
    assert out["trainable_parameters"] == out["trl_trainable_parameters"]  # same model on both sides
    assert abs(out["ratio"] - out["nocturnal_tokens_per_s"] / out["trl_tokens_per_s"]) < 1e-6 * out["ratio"]


def test_frozen_cache_benchmark_prints_one_json_with_its_ratios(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "frozen_cache.py"), "--json", "--model", "tiny", "--device", "cpu",
         "--batch", "2", "--completion-tokens", "6", "--repeats", "1", "--train-layers", "1", "--suite", "smoke"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout[-2000:]
    out = json.loads(lines[0])
    for key in ("warm_speedup", "cold_speedup", "prompt_states_speedup", "cache_mb_used"):
        assert isinstance(out[key], float) and out[key] > 0, key
    assert out["split_block"] == 1 and out["train_layers"] == 1 and out["model"] == "tiny"
    assert set(out["seconds"]) == {"plain", "warm", "cold", "states_plain", "states_cached"}
