"""The PPO driver end to end on the tiny model, the smoke suite, real Spark and real Delta."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cosmocore.memory.store import Store
from cosmocore.train.trainer import ARMS, TrainConfig, Trainer, buffer_config
from cosmocore.train.warmstart import warmup_key
from miniworld.kinds.registry import messages

ROOT = Path(__file__).resolve().parents[3]


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
    with pytest.raises(ValueError, match="rehearsal-pairs must be >= 0"):
        _cfg(tmp_path, rehearsal_pairs=-1)
    with pytest.raises(ValueError, match="value-ridge must be >= 0"):
        _cfg(tmp_path, value_ridge=-0.5)
    with pytest.raises(ValueError, match="correction-steps needs --correction-coef"):
        _cfg(tmp_path, correction_steps=2)
    with pytest.raises(ValueError, match="correction-coef needs --correction-steps"):
        _cfg(tmp_path, correction_coef=1.0)
    with pytest.raises(ValueError, match="rehearsal-pairs needs --correction-steps"):
        _cfg(tmp_path, rehearsal_pairs=2)
    with pytest.raises(ValueError, match="eval-split must be one of test, dev"):
        _cfg(tmp_path, eval_split="train")
    with pytest.raises(ValueError, match="practice-tasks must be >= 1"):
        _cfg(tmp_path, practice_tasks=0)
    with pytest.raises(ValueError, match="frozen-cache-mb must be >= 0"):
        _cfg(tmp_path, frozen_cache_mb=-1)
    assert buffer_config("uniform").alpha == 0.0 and buffer_config("cosmocore").dream_fraction == 0.8
    assert set(ARMS) == {"uniform", "cosmocore", "no_prioritization", "no_pruning", "cocos"}


@pytest.mark.slow
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
    # the critic was refitted on every executed attempt: least squares with an intercept predicts
    # their mean reward on average
    states, rewards = trainer.critic_data
    assert len(states) == first.num_rows == len(rewards)
    assert trainer.value_head(states).mean().item() == pytest.approx(rewards.mean().item(), abs=1e-5)

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
    assert len(resumed.critic_data[0]) == len(ids)  # the critic's data came back with the checkpoint
    assert [h["cycle"] for h in summary["history"]] == [0, 1, 2]
    evals = Store.open(cfg.store).read_evaluations(columns=["eval_id", "cycle", "turn"]).to_pylist()
    assert {e["cycle"] for e in evals} == {0, 1, 2} and {e["turn"] for e in evals} == {1, 2}
    assert len({e["eval_id"] for e in evals}) == len(evals)
    # the tagger was fitted after cycle 1, but on fewer episodes than min_fit_examples: cycle 2's
    # valence is still the self-supervised target (a tagger fitted on a handful tags at random)
    from cosmocore.memory.tagger import valence_target

    rows = Store.open(cfg.store).read_episodes(columns=["cycle", "outcome", "checks_passed", "checks_total", "valence"])
    rows = [r for r in rows.to_pylist() if r["cycle"] == 2]
    assert resumed.tagger_fitted and len(resumed.features) < resumed.tagger_cfg.min_fit_examples
    target = valence_target([r["outcome"] for r in rows], [r["checks_passed"] for r in rows],
                            [r["checks_total"] for r in rows], resumed.tagger_cfg)
    assert [r["valence"] for r in rows] == pytest.approx(list(target))


@pytest.mark.parametrize("n", [5, 40])  # fewer states than dims (dual form) and more (primal)
def test_critic_fit_is_the_ridge_least_squares_solution(n: int) -> None:
    from cosmocore.train.critic import ValueHead

    gen = torch.Generator().manual_seed(n)
    states, returns = torch.randn(n, 16, generator=gen), torch.rand(n, generator=gen)
    head = ValueHead(16)
    head.fit(states, returns, ridge=0.5)
    # the same problem solved independently: minimise |Xc w - yc|^2 + lam |w|^2 by least squares on
    # the augmented system [Xc; sqrt(lam) I] w = [yc; 0]
    x, y = states.double().numpy(), returns.double().numpy()
    xc, yc = x - x.mean(0), y - y.mean()
    lam = 0.5 * (xc**2).sum(1).mean()
    w = np.linalg.lstsq(np.vstack([xc, np.sqrt(lam) * np.eye(16)]), np.concatenate([yc, np.zeros(16)]), rcond=None)[0]
    expected = x @ w + (y.mean() - x.mean(0) @ w)
    assert head(states).detach().numpy() == pytest.approx(expected, abs=1e-5)
    assert np.mean((expected - y) ** 2) < np.mean((y - y.mean()) ** 2)  # it explains some of the variance


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["uniform", "cocos"])
def test_other_arms_run_a_cycle(tmp_path, sandbox, smoke_tasks, arm: str) -> None:
    trainer = Trainer(_cfg(tmp_path, arm=arm, cycles=1, turns=2), sandbox=sandbox)
    summary = trainer.train()
    trainer.close()
    assert summary["cycles_completed"] == 1 and summary["arm"] == arm
    if arm == "cocos":
        assert summary["history"][-1]["buffer_size"] == 0  # COCOS keeps no replay buffer


@pytest.mark.slow
def test_train_cli_json_tiny_smoke_two_cycles(tmp_path, cache_dir, smoke_tasks) -> None:
    env = {**os.environ, "COSMOCORE_CACHE": str(cache_dir)}
    out = subprocess.run([sys.executable, "-m", "cosmocore.cli", "train", "--model", "tiny", "--suite", "smoke",
                          "--cycles", "2", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "run"),
                          "--max-new-tokens", "48", "--episodes-per-cycle", "4", "--eval-tasks", "2",
                          "--nocturnal-steps", "2", "--minibatch", "4", "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)
    assert {"run_id", "arm", "seed", "cycles_completed", "episodes", "final_hallucination_rate", "checkpoint"} <= summary.keys()
    assert summary["cycles_completed"] == 2 and summary["episodes"] > 0
    assert Path(summary["checkpoint"]).exists()


@pytest.mark.slow
def test_train_cli_bad_input(tmp_path) -> None:
    for args, needle in ((["--arm", "nope"], "unknown arm"), (["--model", "no/such-model-xyz"], "no/such-model-xyz")):
        out = subprocess.run([sys.executable, "-m", "cosmocore.cli", "train", "--suite", "smoke", "--store",
                              str(tmp_path / "s"), "--out", str(tmp_path / "o"), *args], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 2, out.stderr
        assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.slow
def test_warm_start_lowers_the_nll_of_train_pairs_and_anchors_the_reference(tmp_path, sandbox, smoke_tasks) -> None:
    import torch

    from miniworld.kinds.registry import messages

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


@pytest.mark.slow
def test_corrective_term_teaches_the_fix_of_replayed_failures(tmp_path, sandbox, smoke_tasks) -> None:
    """With ``correction_coef`` the night also lowers the NLL of a failed train task's reference
    after that episode's prompt; without it the term is absent from the stats."""
    trainer = Trainer(_cfg(tmp_path, cycles=1, correction_coef=1.0, correction_steps=3, lr=2e-3, nocturnal_steps=1),
                      sandbox=sandbox)
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
                [r["prompt_ids"] for r in failed], [trainer.targets.reference_ids(train[r["task_id"]]) for r in failed])
        trainer.policy.temperature = saved
        return float(-(logp * mask).sum() / mask.sum())

    before = nll()
    night = trainer.night(day)
    assert "correction_nll" in night and nll() < before
    trainer.close()
    plain = Trainer(_cfg(tmp_path / "plain", cycles=1), sandbox=sandbox)
    assert "correction_nll" not in plain.night(plain.day())
    plain.close()


@pytest.mark.slow
def test_fix_weight_marks_exactly_the_fix_tokens(tmp_path, sandbox, smoke_tasks) -> None:
    """The fix mask covers the reference tokens a copy of the buggy code gets wrong (and only
    those), and ``fix_weight`` raises their share of the loss: weight 1 is the plain NLL."""
    trainer = Trainer(_cfg(tmp_path, cycles=1), sandbox=sandbox)
    task = trainer.train_tasks[0]
    ref = trainer.targets.reference_ids(task)
    mask = trainer.targets.fix_mask(task)
    assert len(mask) == len(ref) and 0 < sum(mask) < len(ref) / 4
    fixed = trainer.policy.tokenizer.decode([t for t, m in zip(ref, mask) if m])
    buggy_lines = set(task.buggy_code.splitlines())
    fixed_lines = [line for line in task.reference_code.splitlines() if line not in buggy_lines]
    assert fixed_lines and fixed.strip() and all(part in "".join(fixed_lines) for part in fixed.split())
    prompt = [trainer.policy.encode_chat(messages(task))]
    trainer.policy.model.eval()
    trainer.policy.temperature = 1.0  # what nll scores at
    with torch.no_grad():
        plain = trainer.nll(prompt, [task]).item()
        logp = trainer.policy.sequence_logprobs(prompt, [ref])[0]
        trainer.cfg.fix_weight = 10.0
        weighted = trainer.nll(prompt, [task]).item()
    fix = torch.tensor(mask, dtype=torch.float32)
    expected = -(logp[0, : len(ref)] * (1 + 9 * fix)).sum() / (1 + 9 * fix).sum()
    assert weighted == pytest.approx(expected.item(), rel=1e-4) and weighted != pytest.approx(plain)
    trainer.close()


@pytest.mark.slow
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


@pytest.mark.slow
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
    per_cycle = len(resumed.run_tasks.practice) + len(resumed.run_tasks.held_out)  # cycle 1 is the last: both
    assert sorted(e["cycle"] for e in evals) == [0] * per_cycle + [1] * per_cycle
    assert set(Store.open(cfg.store).read_episodes(columns=["cycle"]).column("cycle").to_pylist()) == {1}


@pytest.mark.slow
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
    assert warmup_key(other) != warmup_key(loaded)
    assert warmup_key(Trainer(_cfg(tmp_path / "d", **{**kw, "seed": 2}), sandbox=sandbox)) != warmup_key(loaded)
    for t in (computed, loaded, other):
        t.close()


@pytest.mark.slow
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
    # the frozen block's output is reused: the night's reference pass reads what its policy pass computed
    cache = trainer.policy.frozen_prefix
    assert cache is not None and cache.hits > 0 and cache.misses > 0


@pytest.mark.slow
def test_checkpoint_keeps_only_the_trained_blocks_and_resume_restores_them(tmp_path, sandbox, smoke_tasks) -> None:
    """With --train-layers the frozen blocks are the loaded model's: the checkpoint leaves them
    out (policy and KL anchor), and a resumed run gets back exactly the trained weights."""
    kw = dict(train_layers=1, cycles=1, eval_turns=1, warmup_sft=2, sft_batch=2, sft_lr=1e-3)
    trainer = Trainer(_cfg(tmp_path, **kw), sandbox=sandbox)
    trainer.train()
    trainer.close()
    state = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=False)
    trainable = trainer.policy.trainable_names()
    assert state["policy"]["partial"] and set(state["policy"]["weights"]) == trainable
    assert set(state["reference"]) == trainable
    resumed = Trainer(_cfg(tmp_path, **kw), sandbox=sandbox)
    assert resumed.resume()
    for (name, a), b in zip(trainer.policy.model.named_parameters(), resumed.policy.model.parameters()):
        assert torch.equal(a, b), name
    for a, b in zip(trainer.reference.parameters(), resumed.reference.parameters()):
        assert torch.equal(a, b)
    resumed.close()


def _arms_of_a_seed(tmp_path: Path, sandbox, kw: dict):
    """(arm, cfg, warmed-up trainer, its progress events) for cosmocore and uniform sharing one
    ``warmup_cache``, then uniform without it: what the arms of a seed in a bench look like."""
    for arm, cache in (("cosmocore", True), ("uniform", True), ("uniform", False)):
        cfg = _cfg(tmp_path / f"{arm}-{cache}", arm=arm, **{**kw, **({} if cache else {"warmup_cache": None})})
        events: list[tuple] = []
        trainer = Trainer(cfg, lambda *e: events.append(e), sandbox=sandbox)
        trainer.warmup_cached() if cache else trainer.warmup()
        try:
            yield arm, cfg, trainer, events
        finally:
            trainer.close()


@pytest.mark.slow
def test_cycle0_evaluation_is_shared_by_the_arms_of_a_seed(tmp_path, sandbox, smoke_tasks) -> None:
    """The arms of a seed start from one warm start, so the second arm reads the first's cycle-0
    evaluation: rows under its own run id, the same outcomes as evaluating again."""
    kw = dict(warmup_sft=2, sft_batch=2, sft_lr=1e-3, warmup_cache=str(tmp_path / "warm"), eval_turns=1)
    results = []
    for arm, cfg, trainer, events in _arms_of_a_seed(tmp_path, sandbox, kw):
        events.clear()
        record = trainer.evaluate()
        assert events[-1] == ("eval", 1, 1)  # read from the cache or decoded, the eval bar completes
        rows = Store.open(cfg.store).read_evaluations(columns=["run_id", "arm", "task_id", "outcome", "reward"]).to_pylist()
        assert {r["run_id"] for r in rows} == {cfg.run_id} and {r["arm"] for r in rows} == {arm}
        results.append((record, sorted((r["task_id"], r["outcome"], r["reward"]) for r in rows)))
    (first, rows_a), (second, rows_b), (fresh, rows_c) = results
    assert "eval_cached" not in first and second["eval_cached"] is True and "eval_cached" not in fresh
    practice, test = len(trainer.run_tasks.practice), len([t for t in smoke_tasks if t.split == "test"])
    assert rows_a == rows_b == rows_c and len(rows_a) == practice + test
    assert first["eval_hallucination_rate"] == second["eval_hallucination_rate"] == fresh["eval_hallucination_rate"]


@pytest.mark.slow
def test_cycle1_day_is_shared_by_the_arms_of_a_seed(tmp_path, sandbox, smoke_tasks) -> None:
    """Cycle 1's day samples from the shared warm start with the same draws and RNG state in
    every arm, so the second arm reads the first's attempts (both turns) and the RNG state they
    left: the same episodes and the same generator afterwards as sampling them itself."""
    kw = dict(warmup_sft=2, sft_batch=2, sft_lr=1e-3, warmup_cache=str(tmp_path / "warm"))
    results = []
    for arm, cfg, trainer, events in _arms_of_a_seed(tmp_path, sandbox, kw):
        trainer.cycle = 1
        if not results:  # weights from elsewhere (a resume, other warm-start settings): another key
            probe = trainer.train_tasks[:2]
            before = trainer._shared_day_path(probe)
            param = next(p for p in trainer.policy.model.parameters() if p.requires_grad)
            saved = param.detach().clone()
            with torch.no_grad():
                param.add_(1e-3)
                assert trainer._shared_day_path(probe) != before
                param.copy_(saved)
            assert trainer._shared_day_path(probe) == before
        events.clear()
        record = trainer.day()
        assert events[-1] == ("day", cfg.turns, cfg.turns)  # read or sampled, the day bar completes
        rows = Store.open(cfg.store).read_episodes(
            columns=["run_id", "arm", "task_id", "turn", "completion_ids", "behaviour_logprobs", "outcome", "reward"]
        ).to_pylist()
        assert {r["run_id"] for r in rows} == {cfg.run_id} and {r["arm"] for r in rows} == {arm}
        episodes = sorted((r["task_id"], r["turn"], r["completion_ids"], r["behaviour_logprobs"], r["outcome"],
                           r["reward"]) for r in rows)
        results.append((record, episodes, torch.get_rng_state(), torch.rand(3)))
        trainer.cycle = 2  # a later day is the arm's own: never read from the cache
        assert "day_cached" not in trainer.day()
    (first, ep_a, rng_a, _), (second, ep_b, rng_b, draw_b), (fresh, ep_c, rng_c, draw_c) = results
    assert "day_cached" not in first and second["day_cached"] is True and "day_cached" not in fresh
    assert any(turn == 2 for _, turn, *_ in ep_a)  # a self-correction turn went through the cache too
    assert ep_a == ep_b == ep_c and len(ep_a) >= cfg.episodes_per_cycle
    assert torch.equal(rng_a, rng_b) and torch.equal(rng_b, rng_c) and torch.equal(draw_b, draw_c)
    assert first["tokens_generated"] == second["tokens_generated"] == fresh["tokens_generated"] > 0
    assert len(list((tmp_path / "warm").glob("day1-*.json"))) == 1


@pytest.mark.slow
def test_bf16_autocast_trains_and_keys_its_own_warm_start(tmp_path, sandbox, smoke_tasks) -> None:
    """bf16 autocast of the training passes (a float32 model on the CPU): a cycle runs, the
    weights move, and warm starts with and without it are cached apart."""
    kw = dict(cycles=1, eval_turns=1, warmup_sft=1, sft_batch=2, warmup_cache=str(tmp_path / "warm"))
    on = Trainer(_cfg(tmp_path / "on", bf16_autocast=True, **kw), sandbox=sandbox)
    off = Trainer(_cfg(tmp_path / "off", **kw), sandbox=sandbox)
    assert on.bf16 and not off.bf16 and warmup_key(on) != warmup_key(off)
    before = [p.detach().clone() for p in on.policy.model.parameters() if p.requires_grad]
    summary = on.train()
    assert summary["cycles_completed"] == 1 and all(p.dtype == torch.float32 for p in on.policy.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, [p for p in on.policy.model.parameters() if p.requires_grad]))
    for t in (on, off):
        t.close()


@pytest.mark.slow
def test_correction_steps_add_corrective_only_steps_to_the_night(tmp_path, sandbox, smoke_tasks) -> None:
    """correction_steps: after the PPO steps, more optimizer steps on the corrective term alone,
    each over `minibatch` failures drawn by the arm's sampler among the buffer's failures (the
    PPO steps correct nothing: every arm shows the same number of fixes); no priority update
    comes from them. rehearsal_pairs adds that many warm-start pairs to each corrective-only
    step, the same on a rerun."""
    trainer = Trainer(_cfg(tmp_path, cycles=1, eval_turns=1, nocturnal_steps=1, correction_coef=1.0,
                           correction_steps=2, rehearsal_pairs=2), sandbox=sandbox)
    steps, updates, shown = [], [], []
    step, update, nll = trainer._step, trainer.buffer.update_priorities, trainer.nll
    trainer._step = lambda loss: (steps.append(loss.item()), step(loss))
    trainer.buffer.update_priorities = lambda *a, **k: (updates.append(1), update(*a, **k))
    trainer.nll = lambda prompts, tasks: (shown.append(tasks), nll(prompts, tasks))[1]
    summary = trainer.train()
    trainer.close()
    assert len(steps) == 3 and len(updates) == 1
    assert math.isfinite(summary["history"][-1]["correction_nll"])
    # each corrective-only step shows 4 replayed failures and 2 rehearsed pairs; the PPO step none
    assert [len(tasks) for tasks in shown] == [6, 6]
    trainer.cycle = 1  # the night's cycle: the draw is seeded by (seed, cycle, step), so redone alike
    assert [t.id for t in shown[0][4:]] == [t.id for t in trainer._rehearsal(0)]
    assert [t.id for t in shown[1][4:]] == [t.id for t in trainer._rehearsal(1)] != [t.id for t in shown[0][4:]]
    assert all(t.split == "train" for tasks in shown for t in tasks)


@pytest.mark.slow
def test_kl_term_is_importance_weighted_on_replayed_tokens(tmp_path, sandbox, smoke_tasks) -> None:
    """The k3 KL of a replayed episode is weighted by the (capped) ratio to its behaviour policy:
    the estimate stays that of KL(policy || reference) under off-policy samples, where the plain
    k3 of a token the policy has since pushed down blows up."""
    trainer = Trainer(_cfg(tmp_path, cycles=1), sandbox=sandbox)
    trainer.reference = trainer.policy.reference_model()
    gen = trainer.policy.generate([messages(trainer.train_tasks[0])], max_new_tokens=16)[0]  # behaviour = reference
    with torch.no_grad():  # the policy drifts away from the reference, as nights do
        for p in trainer.policy.model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    rows = [{"prompt_ids": gen.prompt_ids, "completion_ids": gen.completion_ids, "behaviour_logprobs": gen.logprobs,
             "reward": 0.0}]
    _, stats, _ = trainer._loss(rows, None, torch.ones(1))
    trainer.policy.model.eval()
    logp = trainer.policy.sequence_logprobs([gen.prompt_ids], [gen.completion_ids])[0][0]
    ref = trainer.policy.reference_logprobs([gen.prompt_ids], [gen.completion_ids])[0]
    k3 = torch.exp(ref - logp) - (ref - logp) - 1
    weight = torch.exp(logp - torch.tensor(gen.logprobs)).clamp(max=trainer.cfg.ratio_cap)
    assert stats["kl_ref"] == pytest.approx((weight * k3).mean().item(), rel=1e-3)
    assert stats["kl_ref"] != pytest.approx(k3.mean().item(), rel=1e-2)
    trainer.close()
