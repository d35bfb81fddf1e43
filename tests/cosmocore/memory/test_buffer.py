"""Prioritised buffer, Dream Queue, Prune Bin, nocturnal sampler, rebuild, CLI.

Frequencies are measured by drawing; tolerances are several standard errors of the draw count,
so a wrong rate (e.g. 4x instead of 5x) fails while sampling noise does not.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cosmocore.memory.buffer import SOURCE_DREAM, SOURCE_FILL, SOURCE_UNIFORM, ReplayBuffer
from cosmocore.cli.buffer_cli import buffer_app
from cosmocore.memory.config import BufferConfig
from cosmocore.memory.replay_index import DREAM, MAIN, PRUNE
from cosmocore.memory.store import Store
from cosmocore.memory.sumtree import SumTree

ROOT = Path(__file__).resolve().parents[3]


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def chi2_ok(counts: np.ndarray, expected: np.ndarray) -> bool:
    """Pearson chi-square below dof + 5 sd (a wrong distribution lands far above)."""
    stat = float(((counts - expected) ** 2 / expected).sum())
    dof = len(counts) - 1
    return stat < dof + 5 * math.sqrt(2 * dof)


# -- sum tree --------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, database=None)  # no .hypothesis/ in the tree
@given(st.lists(st.floats(0.0, 100.0), min_size=1, max_size=300), st.integers(0, 2**31))
def test_sum_tree_finds_the_interval_numpy_finds(weights: list[float], seed: int) -> None:
    w = np.array(weights)
    if w.sum() <= 0:
        return
    tree = SumTree(len(w), parts=2, top=3)
    tree.set(np.arange(len(w)), w)
    assert math.isclose(tree.total(0), w.sum(), rel_tol=1e-12)
    assert tree.total(1) == 0
    rng = np.random.default_rng(seed)
    slots, got_w, total = tree.sample(64, rng)
    assert np.all(got_w > 0) and np.array_equal(got_w, w[slots])
    # the same u through cumsum/searchsorted lands on the same leaf
    u = rng.random(32) * w.sum() * (1 - 1e-9)
    cs = np.cumsum(tree._roots(0))
    found, _ = tree._find(u, cs, tree._roots(0), 0)
    ref = np.searchsorted(np.cumsum(w), u, side="right")
    ok = w[np.minimum(ref, len(w) - 1)] > 0
    assert np.array_equal(found[ok], ref[ok])


def test_sum_tree_frequencies_follow_weights() -> None:
    w = np.arange(1, 41, dtype=float)
    tree = SumTree(40)
    tree.set(np.arange(40), w)
    rng = np.random.default_rng(1)
    counts = np.bincount(np.concatenate([tree.sample(256, rng)[0] for _ in range(400)]), minlength=40)
    assert chi2_ok(counts, w / w.sum() * counts.sum())


# -- gates, priorities -------------------------------------------------------------------------


def test_bins_follow_the_paper_gates() -> None:
    buf = ReplayBuffer(BufferConfig(capacity=16))
    v = np.array([-0.9, 0.9, -0.51, -0.5, -0.9, 0.1, -0.19, 0.2, 0.1, 0.6])
    a = np.array([0.9, 0.71, 0.8, 0.9, 0.7, 0.1, 0.29, 0.1, 0.3, 0.2])
    want = [DREAM, DREAM, DREAM, MAIN, MAIN, PRUNE, PRUNE, MAIN, MAIN, MAIN]
    buf.add(ids("e", len(v)), np.zeros(len(v)), v, a, np.zeros(len(v)))
    assert [int(buf.bin[buf.slot_of[f"e{i}"]]) for i in range(len(v))] == want
    assert buf.stats()["bins"] == {"dream": 3, "prune": 2, "main": 5}


def test_new_entries_start_at_max_priority_and_replay_sets_the_formula() -> None:
    cfg = BufferConfig(capacity=16, priority_eps=0.0)
    buf = ReplayBuffer(cfg, seed=0)
    buf.add(ids("e", 4), [0.1, 0.2, 0.3, 0.4], [-0.9, 0.5, 0.0, 0.2], [0.9, 0.5, 0.1, 0.3])
    assert np.all(buf.priority[buf.live_slots] == cfg.initial_max_priority)
    buf.update_priorities_by_id(ids("e", 4), np.array([2.5, -0.2, 0.3, 0.0]))
    got = {e: buf.priority[buf.slot_of[e]] for e in ids("e", 4)}
    assert got["e0"] == pytest.approx(2.5 + 0.6 * 0.9 * 0.9)
    assert got["e1"] == pytest.approx(0.2 + 0.6 * 0.5 * 0.5)
    buf.add(["late"])
    assert buf.priority[buf.slot_of["late"]] == pytest.approx(2.5 + 0.6 * 0.81)  # the running max


def test_dream_queue_is_sampled_at_five_times_the_baseline_rate() -> None:
    buf = ReplayBuffer(BufferConfig(capacity=64), seed=3)
    n_dream, n_main = 10, 30
    buf.add(ids("d", n_dream), valence=[-0.9] * n_dream, arousal=[0.9] * n_dream)
    buf.add(ids("m", n_main), valence=[0.3] * n_main, arousal=[0.5] * n_main)
    # distinct priorities, so the 5x multiplies p^alpha rather than replacing it
    rng = np.random.default_rng(0)
    buf.update_priorities_by_id(ids("d", n_dream) + ids("m", n_main), rng.uniform(0.1, 2.0, n_dream + n_main))
    draws = np.concatenate([buf.sample(256).slots for _ in range(800)])
    counts = np.bincount(draws, minlength=buf.config.capacity)
    slots = buf.live_slots
    base = buf.priority[slots] ** buf.config.alpha
    dream = buf.bin[slots] == DREAM
    assert dream.sum() == n_dream
    expected = base * np.where(dream, 5.0, 1.0)
    assert chi2_ok(counts[slots], expected / expected.sum() * len(draws))
    # the rate per unit of p^alpha, dream over main, measured
    rate_d = counts[slots][dream].sum() / base[dream].sum()
    rate_m = counts[slots][~dream].sum() / base[~dream].sum()
    share = counts[slots][dream].sum() / len(draws)
    se_ratio = 5.0 * math.sqrt(1 / (share * len(draws)) + 1 / ((1 - share) * len(draws))) * 4
    assert abs(rate_d / rate_m - 5.0) < se_ratio


def test_nocturnal_minibatch_is_80_percent_dream_queue_20_percent_uniform() -> None:
    buf = ReplayBuffer(BufferConfig(capacity=128), seed=5)
    buf.add(ids("d", 25), valence=[-0.8] * 25, arousal=[0.95] * 25)
    buf.add(ids("m", 75), valence=[0.3] * 75, arousal=[0.5] * 75)
    buf.update_priorities_by_id(ids("d", 25), np.linspace(0.2, 3.0, 25))
    batches = [buf.sample_nocturnal(100) for _ in range(600)]
    assert all(b.dream_shortfall == 0 for b in batches)
    src = np.concatenate([b.source for b in batches])
    slots = np.concatenate([b.slots for b in batches])
    assert np.count_nonzero(src == SOURCE_DREAM) == 80 * 600
    assert np.count_nonzero(src == SOURCE_UNIFORM) == 20 * 600
    dream_slots = np.array([buf.slot_of[e] for e in ids("d", 25)])
    # dream draws: Dream Queue members only, priority-proportional
    d_counts = np.bincount(slots[src == SOURCE_DREAM], minlength=128)
    assert d_counts.sum() == d_counts[dream_slots].sum()
    w = buf.priority[dream_slots] ** buf.config.alpha
    assert chi2_ok(d_counts[dream_slots], w / w.sum() * d_counts.sum())
    # uniform draws: every entry alike
    live = buf.live_slots
    u_counts = np.bincount(slots[src == SOURCE_UNIFORM], minlength=128)[live]
    assert chi2_ok(u_counts, np.full(len(live), u_counts.sum() / len(live)))
    # overall: a Dream Queue member is in 80% + 20% * 25/100 of draws
    share = np.isin(slots, dream_slots).mean()
    assert abs(share - 0.85) < 4 * math.sqrt(0.85 * 0.15 / len(slots))
    # importance weights are the exact mixture probabilities
    b = batches[0]
    p_mix = 0.8 * (buf.tree.leaves(b.slots, 1) / buf.tree.total(1)) + 0.2 / len(buf)
    assert np.allclose(b.probs, p_mix)
    assert b.weights.max() == pytest.approx(1.0)


def test_sample_among_draws_the_arms_distribution_restricted_to_the_given_episodes() -> None:
    """Corrective steps draw `n` failures for every arm; within them, each arm's preferences:
    the nocturnal mixture favours Dream Queue members, the uniform arm (alpha 0) does not."""
    buf = ReplayBuffer(BufferConfig(capacity=64), seed=1)
    buf.add(ids("d", 5), valence=[-0.9] * 5, arousal=[0.95] * 5)
    buf.add(ids("m", 20), valence=[0.3] * 20, arousal=[0.5] * 20)
    failures = ids("d", 5) + ids("m", 20)[:10]  # 5 dream members + 10 main entries
    batches = [buf.sample_among(failures, 4, nocturnal=True) for _ in range(2000)]
    assert all(len(b) == 4 for b in batches)
    slots = np.concatenate([b.slots for b in batches])
    allowed = np.array([buf.slot_of[e] for e in failures])
    assert np.isin(slots, allowed).all()
    probs = buf.draw_probabilities(allowed, nocturnal=True)
    counts = np.bincount(slots, minlength=64)[allowed]
    assert chi2_ok(counts, probs / probs.sum() * len(slots))
    dream = np.isin(slots, [buf.slot_of[e] for e in ids("d", 5)]).mean()
    assert dream > 0.8  # 80% Dream Queue + its uniform share, against 5/15 of the failures
    uniform = ReplayBuffer(BufferConfig(capacity=64, alpha=0.0, dream_fraction=0.0, dream_rate=1.0), seed=1)
    uniform.add(ids("d", 5), valence=[-0.9] * 5, arousal=[0.95] * 5)
    uniform.add(ids("m", 20), valence=[0.3] * 20, arousal=[0.5] * 20)
    even = np.concatenate([uniform.sample_among(failures, 4).slots for _ in range(2000)])
    assert chi2_ok(np.bincount(even, minlength=64)[allowed], np.full(15, len(even) / 15))
    with pytest.raises(ValueError, match="none of the given episodes"):
        buf.sample_among(["nope"], 4)


def test_short_dream_queue_is_filled_from_the_buffer_and_reported() -> None:
    buf = ReplayBuffer(BufferConfig(capacity=64, dream_max_draws_per_member=4.0), seed=2)
    buf.add(ids("d", 3), valence=[-0.9] * 3, arousal=[0.9] * 3)
    buf.add(ids("m", 40), valence=[0.3] * 40, arousal=[0.5] * 40)
    b = buf.sample_nocturnal(20)  # wants 16 dream draws; 3 members x 4 = 12
    assert b.dream_shortfall == 4
    assert [int((b.source == s).sum()) for s in (SOURCE_DREAM, SOURCE_UNIFORM, SOURCE_FILL)] == [12, 4, 4]
    uncapped = ReplayBuffer(BufferConfig(capacity=64, dream_max_draws_per_member=math.inf), seed=2)
    uncapped.add(ids("d", 1), valence=[-0.9], arousal=[0.9])
    uncapped.add(ids("m", 10))
    assert uncapped.sample_nocturnal(20).dream_shortfall == 0
    uncapped.prune(policy_entropy=0.0)  # m* are routine (v=a=0): the queue keeps d0 only
    no_queue = ReplayBuffer(BufferConfig(capacity=8, dream_max_draws_per_member=math.inf), seed=0)
    no_queue.add(ids("m", 5), valence=[0.3] * 5, arousal=[0.5] * 5)
    b = no_queue.sample_nocturnal(10)
    assert b.dream_shortfall == 8 and len(b) == 10
    empty_queue = ReplayBuffer(BufferConfig(capacity=8), seed=0)
    empty_queue.add(ids("m", 5))
    assert empty_queue.sample_nocturnal(10).dream_shortfall == 8


def test_importance_weights_and_beta_annealing() -> None:
    buf = ReplayBuffer(BufferConfig(capacity=32, beta0=0.4, beta_anneal_draws=10), seed=0)
    buf.add(ids("e", 20))
    buf.update_priorities_by_id(ids("e", 20), np.linspace(0.1, 5, 20))
    b = buf.sample(64)
    assert b.beta == pytest.approx(0.4)
    expected = (len(buf) * b.probs) ** -0.4
    assert np.allclose(b.weights, expected / expected.max(), rtol=1e-6)
    for _ in range(12):
        b = buf.sample(8)
    assert b.beta == 1.0


# -- pruning -----------------------------------------------------------------------------------


def test_prune_deletes_routine_entries_unless_entropy_is_high() -> None:
    buf = ReplayBuffer(BufferConfig(capacity=32))
    buf.add(ids("low", 5), valence=[0.1] * 5, arousal=[0.1] * 5, entropy=[0.1] * 5)
    buf.add(ids("explore", 4), valence=[0.1] * 4, arousal=[0.1] * 4, entropy=[0.5] * 4)
    buf.add(ids("keep", 3), valence=[-0.9] * 3, arousal=[0.9] * 3, entropy=[0.0] * 3)
    assert sorted(buf.prune()) == ids("low", 5)
    assert set(buf.slot_of) == set(ids("explore", 4) + ids("keep", 3))
    assert buf.removed == dict.fromkeys(ids("low", 5), "pruned")
    # the current policy's entropy, when given, decides instead
    assert buf.prune(policy_entropy=0.9) == []
    assert sorted(buf.prune(policy_entropy=0.2)) == ids("explore", 4)
    assert buf.stats()["bins"] == {"dream": 3, "prune": 0, "main": 0}


def test_low_confidence_variance_raises_pruning_strength() -> None:
    cfg = BufferConfig(capacity=16)
    buf = ReplayBuffer(cfg)
    buf.add(["edge"], valence=[0.25], arousal=[0.1], entropy=[0.0])
    assert buf.bin[buf.slot_of["edge"]] == MAIN
    assert buf.tune_pruning(0.05) == pytest.approx(1.1)
    assert buf.tune_pruning(0.05) == pytest.approx(1.2)  # gate |v| < 0.24 ... not yet
    assert buf.bin[buf.slot_of["edge"]] == MAIN
    buf.tune_pruning(0.05)  # |v| < 0.26: now routine
    assert buf.bin[buf.slot_of["edge"]] == PRUNE
    assert buf.prune() == ["edge"]
    for _ in range(20):
        buf.tune_pruning(0.01)
    assert buf.prune_strength == cfg.prune_strength_max
    for _ in range(20):
        buf.tune_pruning(0.5)
    assert buf.prune_strength == cfg.prune_strength_min
    assert [e["strength"] for e in buf.prune_log[:3]] == pytest.approx([1.1, 1.2, 1.3])
    assert buf.prune_log[0]["confidence_variance"] == 0.05


# -- capacity ----------------------------------------------------------------------------------


def test_eviction_removes_lowest_priority_first_oldest_on_ties() -> None:
    buf = ReplayBuffer(BufferConfig(capacity=5, priority_eps=0.0, lam=0.0), seed=0)
    buf.add(ids("e", 5))
    buf.update_priorities_by_id(ids("e", 5), np.array([0.5, 0.1, 0.3, 0.1, 0.9]))
    res = buf.add(["n0", "n1"])
    assert res.evicted == ["e1", "e3"]  # both 0.1, e1 is older
    res = buf.add(["n2"])
    assert res.evicted == ["e2"]
    assert set(buf.slot_of) == {"e0", "e4", "n0", "n1", "n2"}
    assert len(buf) == 5
    # e0 (0.5) first; then, among the entries at the max priority 0.9, the oldest (e4)
    res = buf.add(["n3", "n4"])
    assert res.evicted == ["e0", "e4"]


def test_stale_priority_updates_are_ignored_after_eviction() -> None:
    buf = ReplayBuffer(BufferConfig(capacity=4), seed=0)
    buf.add(ids("e", 4))
    b = buf.sample(8)
    buf.add(ids("n", 4))  # evicts everything, slots are reused
    assert buf.update_priorities(b, np.full(8, 7.0)) == 0
    assert np.all(buf.priority[buf.live_slots] == buf.max_priority)


def test_duplicate_and_removed_ids_are_not_readmitted() -> None:
    buf = ReplayBuffer(BufferConfig(capacity=8))
    buf.add(["a", "b", "a"], valence=[0.1, 0.9, 0.1], arousal=[0.1, 0.9, 0.1])
    assert len(buf) == 2
    buf.prune()
    res = buf.add(["a", "b", "c"])
    assert res.added == ["c"] and res.skipped == ["a", "b"]


# -- restart -----------------------------------------------------------------------------------


def _episodes(prefix: str, n: int, rng: np.random.Generator) -> list[dict[str, object]]:
    return [
        {"episode_id": f"{prefix}{i}", "td_error": float(rng.normal()), "valence": float(rng.uniform(-1, 1)),
         "arousal": float(rng.uniform(0, 1)), "entropy": float(rng.uniform(0, 0.6)), "outcome": "correct"}
        for i in range(n)
    ]


def _snapshot(buf: ReplayBuffer) -> dict[str, tuple[float, float, int, float]]:
    return {e: (buf.priority[s], buf.td_error[s], int(buf.bin[s]), float(buf.arousal[s]))
            for e, s in buf.slot_of.items()}


def test_rebuild_after_restart_equals_the_live_buffer(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    store = Store.open(tmp_path / "s")
    cfg = BufferConfig(capacity=150)
    live = ReplayBuffer(cfg, seed=1)

    first = _episodes("a", 120, rng)
    store.append_episodes(first)
    live.add_table(store.read_episodes(episode_ids=[r["episode_id"] for r in first]).sort_by("episode_id"))
    for _ in range(5):
        b = live.sample_nocturnal(32)
        live.update_priorities(b, rng.normal(size=32), arousal=rng.uniform(0, 1, 32))
    live.tune_pruning(0.05)
    assert live.prune()
    live.save(store)

    second = _episodes("b", 60, rng)  # appended after the checkpoint; overflows capacity
    store.append_episodes(second)
    live.add_table(store.read_episodes(episode_ids=[r["episode_id"] for r in second])
                   .sort_by([("created_at", "ascending"), ("episode_id", "ascending")]))
    assert any(s == "evicted" for s in live.removed.values())

    rebuilt = ReplayBuffer.rebuild(store, cfg)
    assert _snapshot(rebuilt) == _snapshot(live)
    assert rebuilt.removed == live.removed
    assert rebuilt.prune_strength == live.prune_strength and rebuilt.prune_log == live.prune_log
    assert rebuilt.max_priority == live.max_priority and rebuilt.draws == live.draws
    assert rebuilt.stats()["bins"] == live.stats()["bins"]
    # rebuilding twice adds nothing twice
    again = ReplayBuffer.rebuild(store, cfg)
    assert len(again) == len(rebuilt) == len(set(again.slot_of))


def test_rebuild_without_checkpoint_admits_every_episode(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    store.append_episodes(_episodes("a", 30, np.random.default_rng(0)))
    buf = ReplayBuffer.rebuild(store, BufferConfig(capacity=64))
    assert len(buf) == 30


# -- CLI -------------------------------------------------------------------------------------


def test_buffer_stats_cli_json(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    store.append_episodes(_episodes("a", 40, np.random.default_rng(0)))
    buf = ReplayBuffer.rebuild(store, BufferConfig(capacity=100))
    buf.save(store)
    result = CliRunner().invoke(buffer_app, ["stats", "--store", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["rows"]["episodes"] == 40 and out["entries"] == 40 and out["capacity"] == 100
    assert sum(out["bins"].values()) == 40 and out["bins"] == buf.stats()["bins"]
    assert set(out["priority_quantiles"]) >= {"min", "p50", "max"}
    assert out["versions"]["buffer_state"] == 1


def test_buffer_stats_cli_human_readable(tmp_path: Path) -> None:
    Store.open(tmp_path / "s").append_episodes(_episodes("a", 5, np.random.default_rng(0)))
    result = CliRunner().invoke(buffer_app, ["stats", "--store", str(tmp_path / "s")])
    assert result.exit_code == 0 and "bin dream" in result.stdout


def test_buffer_stats_cli_bad_store_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-store"
    bad.mkdir()
    result = CliRunner().invoke(buffer_app, ["stats", "--store", str(bad), "--json"])
    assert result.exit_code == 2
    error = json.loads(result.stdout)  # with --json the error is also one JSON object on stdout
    assert error["input"] == str(bad) and error["exit_status"] == 2 and "not a CosmoCore store" in error["error"]
    assert str(bad) in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_benchmark_script_prints_one_json_object() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "replay_sampling.py"), "--json", "--capacity", "20000",
         "--seconds", "0.3", "--rounds", "1"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    result = json.loads(out.stdout)
    for key in ("capacity", "samples_per_s", "naive_samples_per_s", "cpprb_samples_per_s", "bytes_per_entry"):
        assert key in result
    assert result["capacity"] == 20000 and result["samples_per_s"] > 0
