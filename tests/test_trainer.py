"""The PPO driver end to end on the tiny model, the smoke suite, real Spark and real Delta."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cosmocore.store import Store
from cosmocore.trainer import ARMS, TrainConfig, Trainer, buffer_config
from miniworld.task import messages

ROOT = Path(__file__).resolve().parents[1]


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(model="tiny", suite="smoke", cycles=2, seed=1, store=str(tmp_path / "store"), out=str(tmp_path / "out"),
                episodes_per_cycle=4, turns=2, max_new_tokens=24, nocturnal_steps=2, minibatch=4, tagger_epochs=2)
    base.update(kw)
    return TrainConfig(**base)


def test_config_rejects_bad_arms_and_counts(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown arm 'nope'"):
        _cfg(tmp_path, arm="nope")
    with pytest.raises(ValueError, match="cycles"):
        _cfg(tmp_path, cycles=0)
    assert buffer_config("uniform").alpha == 0.0 and buffer_config("cosmocore").dream_fraction == 0.8
    assert set(ARMS) == {"uniform", "cosmocore", "no_prioritization", "no_pruning", "cocos"}


def test_cosmocore_arm_trains_two_cycles_and_resumes_without_duplicates(tmp_path, sandbox, smoke_tasks) -> None:
    cfg = _cfg(tmp_path, cycles=1)
    trainer = Trainer(cfg, sandbox=sandbox)
    weights_before = [p.detach().clone() for p in trainer.policy.model.parameters()][:3]
    summary = trainer.train()
    trainer.close()
    assert summary["cycles_completed"] == 1
    initial, record = summary["history"]
    assert initial["cycle"] == 0 and "eval_hallucination_rate" in initial and "day_reward" not in initial
    assert "loss" not in initial and record["cycle"] == 1
    for key in ("approx_kl", "clip_frac", "explained_variance", "kl_ref", "dream_share", "entropy",
                "eval_hallucination_rate", "nocturnal_tokens_per_s"):
        assert key in record, key
    assert 0.0 <= record["eval_hallucination_rate"] <= 1.0
    assert any(not (a == b).all() for a, b in zip(weights_before, list(trainer.policy.model.parameters())[:3]))
    store = Store.open(cfg.store)
    first = store.read_episodes(columns=["episode_id", "cycle", "behaviour_logprobs", "completion_ids"])
    assert first.num_rows >= cfg.episodes_per_cycle
    for row in first.to_pylist():
        assert len(row["behaviour_logprobs"]) == len(row["completion_ids"])

    # a new process picks up where the checkpoint left off: cycle 2, same run id, no duplicates
    resumed = Trainer(_cfg(tmp_path, cycles=2), sandbox=sandbox)
    assert resumed.resume() and resumed.cycle == 2 and resumed.cfg.run_id == cfg.run_id
    summary = resumed.train()
    resumed.close()
    episodes = Store.open(cfg.store).read_episodes(columns=["episode_id", "cycle", "run_id"])
    ids = episodes.column("episode_id").to_pylist()
    assert len(ids) == len(set(ids))
    assert set(episodes.column("cycle").to_pylist()) == {1, 2}
    assert summary["cycles_completed"] == 2 and summary["episodes"] == len(ids)
    assert [h["cycle"] for h in summary["history"]] == [0, 1, 2]
    evals = Store.open(cfg.store).read_evaluations(columns=["eval_id", "cycle", "turn"]).to_pylist()
    assert {e["cycle"] for e in evals} == {0, 1, 2} and {e["turn"] for e in evals} == {1, 2}
    assert len({e["eval_id"] for e in evals}) == len(evals)
    # the tagger was fitted after cycle 1, but on fewer episodes than min_fit_examples: cycle 2's
    # valence is still the self-supervised target (a tagger fitted on a handful tags at random)
    from cosmocore.tagger import valence_target

    rows = Store.open(cfg.store).read_episodes(columns=["cycle", "outcome", "checks_passed", "checks_total", "valence"])
    rows = [r for r in rows.to_pylist() if r["cycle"] == 2]
    assert resumed.tagger_fitted and len(resumed.features) < resumed.tagger_cfg.min_fit_examples
    target = valence_target([r["outcome"] for r in rows], [r["checks_passed"] for r in rows],
                            [r["checks_total"] for r in rows], resumed.tagger_cfg)
    assert [r["valence"] for r in rows] == pytest.approx(list(target))


@pytest.mark.parametrize("arm", ["uniform", "cocos"])
def test_other_arms_run_a_cycle(tmp_path, sandbox, smoke_tasks, arm: str) -> None:
    trainer = Trainer(_cfg(tmp_path, arm=arm, cycles=1, turns=2), sandbox=sandbox)
    summary = trainer.train()
    trainer.close()
    assert summary["cycles_completed"] == 1 and summary["arm"] == arm
    if arm == "cocos":
        assert summary["history"][-1]["buffer_size"] == 0  # COCOS keeps no replay buffer


def test_train_cli_json_tiny_smoke_two_cycles(tmp_path, cache_dir, smoke_tasks) -> None:
    env = {**os.environ, "COSMOCORE_CACHE": str(cache_dir)}
    out = subprocess.run([sys.executable, "-m", "cosmocore.cli", "train", "--model", "tiny", "--suite", "smoke",
                          "--cycles", "2", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "run"),
                          "--max-new-tokens", "48", "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)
    assert {"run_id", "arm", "seed", "cycles_completed", "episodes", "final_hallucination_rate", "checkpoint"} <= summary.keys()
    assert summary["cycles_completed"] == 2 and summary["episodes"] > 0
    assert Path(summary["checkpoint"]).exists()


def test_train_cli_bad_input(tmp_path) -> None:
    for args, needle in ((["--arm", "nope"], "unknown arm"), (["--model", "no/such-model-xyz"], "no/such-model-xyz")):
        out = subprocess.run([sys.executable, "-m", "cosmocore.cli", "train", "--suite", "smoke", "--store",
                              str(tmp_path / "s"), "--out", str(tmp_path / "o"), *args], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 2, out.stderr
        assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_warm_start_lowers_the_nll_of_train_pairs_and_anchors_the_reference(tmp_path, sandbox, smoke_tasks) -> None:
    import torch

    from miniworld.task import messages

    trainer = Trainer(_cfg(tmp_path, warmup_sft=12, sft_batch=2, sft_lr=2e-3, cycles=1), sandbox=sandbox)
    task = trainer.train_tasks[0]
    prompt = [trainer.policy.encode_chat(messages(task))]
    target = [trainer.policy.tokenizer(f"```python\n{task.reference_code}```", add_special_tokens=False)["input_ids"]]

    def nll() -> float:
        trainer.policy.model.eval()
        with torch.no_grad():
            logp, _, mask, _ = trainer.policy.sequence_logprobs(prompt, target)
        return float(-(logp * mask).sum() / mask.sum())

    before = nll()
    stats = trainer.warmup()
    assert stats["sft_steps"] == 12 and nll() < before
    assert {t.split for t in trainer.train_tasks} == {"train"}  # the eval split never trains
    trainer.train()
    # the KL reference is the warmed-up policy, not the random init
    ref = trainer.reference
    with torch.no_grad():
        ref_logp = trainer.policy.sequence_logprobs(prompt, target, model=ref)[0]
    assert float(-(ref_logp).sum() / len(target[0])) < before
    trainer.close()


def test_corrective_term_teaches_the_fix_of_replayed_failures(tmp_path, sandbox, smoke_tasks) -> None:
    """With ``correction_coef`` the night also lowers the NLL of a failed train task's reference
    after that episode's prompt; without it the term is absent from the stats."""
    trainer = Trainer(_cfg(tmp_path, cycles=1, correction_coef=1.0, lr=2e-3, nocturnal_steps=3), sandbox=sandbox)
    day = trainer.day()
    rows = trainer._episodes(list(trainer.buffer.slot_of))
    failed = [r for r in rows if r["reward"] < 1.0]
    assert failed, "the tiny random model failed nothing?"
    train = {t.id: t for t in trainer.train_tasks}

    def nll() -> float:
        trainer.policy.model.eval()
        trainer.policy.temperature, saved = 1.0, trainer.policy.temperature
        with torch.no_grad():
            logp, _, mask, _ = trainer.policy.sequence_logprobs(
                [r["prompt_ids"] for r in failed], [trainer._reference_ids(train[r["task_id"]]) for r in failed])
        trainer.policy.temperature = saved
        return float(-(logp * mask).sum() / mask.sum())

    before = nll()
    night = trainer.night(day)
    assert "correction_nll" in night and nll() < before
    trainer.close()
    plain = Trainer(_cfg(tmp_path / "plain", cycles=1), sandbox=sandbox)
    assert "correction_nll" not in plain.night(plain.day())
    plain.close()


def test_fix_weight_marks_exactly_the_fix_tokens(tmp_path, sandbox, smoke_tasks) -> None:
    """The fix mask covers the reference tokens a copy of the buggy code gets wrong (and only
    those), and ``fix_weight`` raises their share of the loss: weight 1 is the plain NLL."""
    trainer = Trainer(_cfg(tmp_path, cycles=1), sandbox=sandbox)
    task = trainer.train_tasks[0]
    ref = trainer._reference_ids(task)
    mask = trainer._fix_mask(task)
    assert len(mask) == len(ref) and 0 < sum(mask) < len(ref) / 4
    fixed = trainer.policy.tokenizer.decode([t for t, m in zip(ref, mask) if m])
    buggy_lines = set(task.buggy_code.splitlines())
    fixed_lines = [line for line in task.reference_code.splitlines() if line not in buggy_lines]
    assert fixed_lines and fixed.strip() and all(part in "".join(fixed_lines) for part in fixed.split())
    prompt = [trainer.policy.encode_chat(messages(task))]
    trainer.policy.model.eval()
    trainer.policy.temperature = 1.0  # what _nll scores at
    with torch.no_grad():
        plain = trainer._nll(prompt, [task]).item()
        logp, _, tok_mask, _ = trainer.policy.sequence_logprobs(prompt, [ref])
        trainer.cfg.fix_weight = 10.0
        weighted = trainer._nll(prompt, [task]).item()
    fix = torch.tensor(mask, dtype=torch.float32)
    expected = -(logp[0, : len(ref)] * (1 + 9 * fix)).sum() / (1 + 9 * fix).sum()
    assert weighted == pytest.approx(expected.item(), rel=1e-4) and weighted != pytest.approx(plain)
    trainer.close()


def test_same_seed_same_run(tmp_path, sandbox, smoke_tasks) -> None:
    """Everything reproducible from --seed: two runs, same seed, same episodes and metrics."""
    histories, completions = [], []
    for k in range(2):
        trainer = Trainer(_cfg(tmp_path / f"r{k}", cycles=1), sandbox=sandbox)
        summary = trainer.train()
        trainer.close()
        keep = ("day_reward", "day_correct", "entropy", "loss", "eval_hallucination_rate", "tokens_generated")
        histories.append({key: summary["history"][-1][key] for key in keep})
        rows = Store.open(str(tmp_path / f"r{k}" / "store")).read_episodes(columns=["task_id", "turn", "completion_ids"])
        completions.append(sorted((r["task_id"], r["turn"], tuple(r["completion_ids"])) for r in rows.to_pylist()))
    assert histories[0] == histories[1]
    assert completions[0] == completions[1]


def test_initial_evaluation_is_checkpointed_and_resume_goes_on_from_cycle_one(tmp_path, sandbox, smoke_tasks) -> None:
    """A run interrupted right after its cycle-0 evaluation neither repeats it nor skips cycle 1."""
    cfg = _cfg(tmp_path, cycles=1, eval_turns=1)
    trainer = Trainer(cfg, sandbox=sandbox)
    seen: list[dict] = []

    def stop_after_initial_eval(record: dict) -> None:
        seen.append(record)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer.train(on_cycle=stop_after_initial_eval)
    trainer.close()
    assert [r["cycle"] for r in seen] == [0]
    assert Store.open(cfg.store).read_episodes(columns=["episode_id"]).num_rows == 0  # no training yet
    resumed = Trainer(_cfg(tmp_path, cycles=1, eval_turns=1), sandbox=sandbox)
    assert resumed.resume() and resumed.cycle == 1
    summary = resumed.train()
    resumed.close()
    assert [h["cycle"] for h in summary["history"]] == [0, 1] and summary["cycles_completed"] == 1
    evals = Store.open(cfg.store).read_evaluations(columns=["cycle", "turn"]).to_pylist()
    assert sorted(e["cycle"] for e in evals) == [0] * len(resumed.eval_tasks) + [1] * len(resumed.eval_tasks)
    assert set(Store.open(cfg.store).read_episodes(columns=["cycle"]).column("cycle").to_pylist()) == {1}


def test_warm_start_cache_is_shared_and_identical_to_recomputing(tmp_path, sandbox, smoke_tasks) -> None:
    cache = tmp_path / "warm"
    kw = dict(warmup_sft=3, sft_batch=2, sft_lr=1e-3, warmup_cache=str(cache))
    computed = Trainer(_cfg(tmp_path / "a", **kw), sandbox=sandbox)
    stats = computed.warmup_cached()
    assert stats["warmup_cached"] is False and len(list(cache.glob("warmup-*.pt"))) == 1
    loaded = Trainer(_cfg(tmp_path / "b", arm="uniform", **kw), sandbox=sandbox)  # the other arm, same seed
    before = [p.detach().clone() for p in loaded.policy.model.parameters()]
    again = loaded.warmup_cached()
    assert again["warmup_cached"] is True and again["sft_loss_last"] == stats["sft_loss_last"]
    for a, b in zip(computed.policy.model.parameters(), loaded.policy.model.parameters()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(before, loaded.policy.model.parameters()))
    # any setting the weights depend on gives another key
    other = Trainer(_cfg(tmp_path / "c", **{**kw, "sft_lr": 2e-3}), sandbox=sandbox)
    assert other._warmup_key() != loaded._warmup_key()
    assert Trainer(_cfg(tmp_path / "d", **{**kw, "seed": 2}), sandbox=sandbox)._warmup_key() != loaded._warmup_key()
    for t in (computed, loaded, other):
        t.close()


def test_train_layers_freezes_all_but_the_top_blocks(tmp_path, sandbox, smoke_tasks) -> None:
    trainer = Trainer(_cfg(tmp_path, train_layers=1, cycles=1, eval_turns=1), sandbox=sandbox)
    model = trainer.policy.model
    frozen = [p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("model.layers.1.", "model.norm.")) for n in trainable)
    trainer.train()
    trainer.close()
    after = [p for p in model.parameters() if not p.requires_grad]
    assert all(torch.equal(a, b) for a, b in zip(frozen, after))
