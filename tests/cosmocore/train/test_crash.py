"""kill -9 a ``cosmocore train`` run in its day phase, its nocturnal phase, inside the Delta commit
of its episodes, and between saving the replay index and the checkpoint; resume each time.
Nothing is lost or stored twice, every cycle's episodes are complete, a resumed run drops the rows
of the cycles after its checkpoint and redoes them whole, the index it starts from is the
checkpoint's index (accounting for every episode kept), and training goes on to the cycle budget.

One run is killed four times in a row (the kill points are a test-only harness,
``tests/cosmocore/train/crash_harness.py``, around the real CLI); all runs share the session's Spark server."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cosmocore.memory.buffer import ReplayBuffer
from cosmocore.memory.store import Store
from cosmocore.train.trainer import buffer_config

from crash_harness import buffer_snapshot

ROOT = Path(__file__).resolve().parents[3]
CYCLES, EPISODES, TURNS, EVAL_TASKS = 2, 4, 2, 2
#: Where each run is killed, in order; the run after the last one finishes.
KILLS = ("day:1", "night:1", "commit:2", "checkpoint:2")


def _train(tmp: Path, env: dict, resume: bool, crash_at: str | None) -> subprocess.CompletedProcess:
    args = ["--model", "tiny", "--suite", "smoke", "--cycles", str(CYCLES), "--seed", "1",
            "--episodes-per-cycle", str(EPISODES), "--turns", str(TURNS), "--max-new-tokens", "24",
            "--nocturnal-steps", "2", "--minibatch", "4", "--eval-tasks", str(EVAL_TASKS),
            "--store", str(tmp / "store"), "--out", str(tmp / "out"), "--json"]
    run_env = {**env, "CRASH_AT": crash_at or "", "CRASH_DUMP": str(tmp / "resumed.json")}
    return subprocess.run([sys.executable, str(ROOT / "tests" / "cosmocore" / "train" / "crash_harness.py"), "train", *args,
                           *(["--resume"] if resume else [])], cwd=ROOT, env=run_env, capture_output=True,
                          text=True, timeout=600)


def _checkpoint(tmp: Path) -> dict:
    return torch.load(tmp / "out" / "checkpoint.pt", weights_only=False)


def _checkpoint_run_id(ckpt: dict) -> str:
    return ckpt["config"]["run_id"]


def _episodes(store: Store) -> list[dict]:
    return store.read_episodes(columns=["episode_id", "run_id", "cycle", "turn", "outcome", "created_at"]).to_pylist()


def _assert_cycles_complete(rows: list[dict], run_id: str, cycles: set[int]) -> None:
    """Each cycle: ids e0..e{n-1}; every task attempted once; a turn 2 for each failed turn 1."""
    ids = [r["episode_id"] for r in rows]
    assert len(ids) == len(set(ids)), "an episode was stored twice"
    assert {r["cycle"] for r in rows} == cycles
    for cycle in cycles:
        mine = [r for r in rows if r["cycle"] == cycle]
        assert {r["episode_id"] for r in mine} == {f"{run_id}-c{cycle}-e{i}" for i in range(len(mine))}
        first = [r for r in mine if r["turn"] == 1]
        assert len(first) == EPISODES, (cycle, len(first))
        assert sum(r["turn"] == 2 for r in mine) == sum(r["outcome"] != "correct" for r in first)


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory, cache_dir, sandbox, smoke_tasks) -> dict:
    """Train, kill at each point of ``KILLS`` in turn, resume; what the test reads afterwards."""
    tmp = tmp_path_factory.mktemp("crash")
    env = {**os.environ, "COSMOCORE_CACHE": str(cache_dir),
           "CRASH_ENDPOINT": json.dumps(dataclasses.asdict(sandbox.endpoint))}
    states, resumes = [], []
    for k, kill in enumerate(KILLS + (None,)):
        if k:  # what a correct resume starts from: the checkpoint's index, the later cycles dropped
            ckpt = _checkpoint(tmp)
            copy = tmp / f"expected-{k}"
            shutil.copytree(tmp / "store", copy)  # computed on a copy: the resume does it for real
            store = Store.open(copy)
            store.discard_after(_checkpoint_run_id(ckpt), ckpt["cycle"])
            expected = ReplayBuffer.rebuild(store, buffer_config("cosmocore"), seed=1,
                                            state_version=ckpt["table_versions"]["buffer_state"])
            resumes.append({"checkpoint_cycle": ckpt["cycle"], "expected": buffer_snapshot(expected),
                            "stored": {r["episode_id"] for r in _episodes(store)}})
        (tmp / "resumed.json").unlink(missing_ok=True)
        proc = _train(tmp, env, resume=k > 0, crash_at=kill)
        if k:
            resumes[-1]["resumed"] = json.loads((tmp / "resumed.json").read_text())
        if kill is None:
            assert proc.returncode == 0, proc.stderr[-3000:]
            return {"tmp": tmp, "states": states, "resumes": resumes, "summary": json.loads(proc.stdout)}
        assert proc.returncode == -signal.SIGKILL, f"{kill}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
        store = Store.open(tmp / "store")
        states.append({"kill": kill, "checkpoint_cycle": _checkpoint(tmp)["cycle"], "episodes": _episodes(store),
                       "checkpoint_buffer_version": _checkpoint(tmp)["table_versions"]["buffer_state"],
                       "buffer_version": store.versions()["buffer_state"]})
    raise AssertionError("unreachable")


@pytest.mark.slow
def test_each_kill_leaves_committed_cycles_whole(crashed_run) -> None:
    by_kill = {s["kill"]: s for s in crashed_run["states"]}
    run_id = crashed_run["summary"]["run_id"]
    # day 1: nothing of cycle 1 stored yet; the checkpoint is the initial evaluation's
    assert by_kill["day:1"]["checkpoint_cycle"] == 0 and by_kill["day:1"]["episodes"] == []
    # night 1: cycle 1's episodes are stored, whole, ahead of the checkpoint
    assert by_kill["night:1"]["checkpoint_cycle"] == 0
    _assert_cycles_complete(by_kill["night:1"]["episodes"], run_id, {1})
    # inside the commit of cycle 2: the commit landed whole or not at all
    commit = by_kill["commit:2"]
    assert commit["checkpoint_cycle"] == 1
    _assert_cycles_complete(commit["episodes"], run_id, {r["cycle"] for r in commit["episodes"]})
    assert {r["cycle"] for r in commit["episodes"]} in ({1}, {1, 2})
    # between the index and the checkpoint: the index is a version ahead of the checkpoint
    ahead = by_kill["checkpoint:2"]
    assert ahead["checkpoint_cycle"] == 1 and ahead["buffer_version"] > ahead["checkpoint_buffer_version"]
    _assert_cycles_complete(ahead["episodes"], run_id, {1, 2})


@pytest.mark.slow
def test_resume_starts_from_the_checkpoint_index_and_accounts_for_every_episode(crashed_run) -> None:
    assert len(crashed_run["resumes"]) == len(KILLS)
    for r in crashed_run["resumes"]:
        assert r["resumed"]["cycle"] == r["checkpoint_cycle"] + 1
        resumed = r["resumed"]["buffer"]
        assert resumed == json.loads(json.dumps(r["expected"]))
        assert set(resumed["live"]) | set(resumed["removed"]) == r["stored"]


@pytest.mark.slow
def test_training_goes_on_to_the_budget_without_losing_or_repeating_anything(crashed_run) -> None:
    tmp, summary = crashed_run["tmp"], crashed_run["summary"]
    assert summary["cycles_completed"] == CYCLES and _checkpoint(tmp)["cycle"] == CYCLES
    assert [h["cycle"] for h in _checkpoint(tmp)["history"]] == list(range(CYCLES + 1))
    store = Store.open(tmp / "store")
    rows = _episodes(store)
    _assert_cycles_complete(rows, summary["run_id"], set(range(1, CYCLES + 1)))
    assert summary["episodes"] == len(rows)
    evals = store.read_evaluations(columns=["eval_id", "cycle", "turn", "split"]).to_pylist()
    assert len({e["eval_id"] for e in evals}) == len(evals)
    for split, cycles in (("practice", range(CYCLES + 1)), ("test", (0, CYCLES))):  # none lost, none twice
        per_cycle = [sum(e["cycle"] == c and e["split"] == split for e in evals) for c in cycles]
        assert per_cycle[0] > 0 and per_cycle == [per_cycle[0]] * len(cycles), (split, per_cycle)
    assert {e["cycle"] for e in evals if e["split"] == "test"} == {0, CYCLES}
    # cycles stored ahead of a checkpoint were dropped at resume and redone: the final rows of
    # cycle 1 are newer than the ones the night:1 kill left behind
    killed = {r["episode_id"]: r["created_at"] for r in next(s for s in crashed_run["states"]
                                                             if s["kill"] == "night:1")["episodes"]}
    assert killed and all(r["created_at"] > killed[r["episode_id"]] for r in rows if r["episode_id"] in killed)
    final = ReplayBuffer.rebuild(store, buffer_config("cosmocore"), seed=1)
    assert set(final.slot_of) | set(final.removed) == {r["episode_id"] for r in rows}
    assert store.load_buffer_state() is not None and len(final) == len(final.slot_of)


def test_rebuild_at_a_checkpoint_version_ignores_a_newer_index(tmp_path) -> None:
    """The state a run killed between saving the index and the checkpoint leaves behind: the
    checkpoint names the older index version, and a rebuild at that version ignores the newer."""
    store = Store.open(tmp_path / "store")
    store.append_episodes([{"episode_id": f"e{i}", "td_error": 0.1 * i, "valence": 0.1, "arousal": 0.1,
                            "entropy": 0.0, "outcome": "correct"} for i in range(6)])
    buf = ReplayBuffer.rebuild(store, buffer_config("cosmocore"), seed=0)
    at_checkpoint = buffer_snapshot(buf)
    version = buf.save(store)
    batch = buf.sample(4)  # the next night, saved before its checkpoint was
    buf.update_priorities(batch, [2.0] * len(batch))
    assert buf.prune()
    buf.save(store)
    assert buffer_snapshot(ReplayBuffer.rebuild(store, buffer_config("cosmocore"), seed=0,
                                                state_version=version)) == at_checkpoint
    assert buffer_snapshot(ReplayBuffer.rebuild(store, buffer_config("cosmocore"), seed=0)) != at_checkpoint
