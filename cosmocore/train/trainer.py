"""The PPO driver: day phase (rollouts in Mini-World), nocturnal phase (replay + clipped policy
gradient), evaluation on the held-out split. Read top to bottom, in the manner of CleanRL's
``ppo.py``: every hyperparameter is declared once in ``TrainConfig`` with its help text, and each
phase of a cycle is a named method.

One cycle:
  day      sample train tasks; generate turn 1 (and a self-correction turn 2 with the
           environment's feedback); execute in the sandbox in parallel; value estimates and TD
           errors; refit the critic on every executed attempt; tag valence/arousal; append to
           the Delta ``episodes`` table; index in the buffer
  night    minibatches from the buffer (arm-specific sampler); clipped PG loss with the importance
           ratio against the stored behaviour log-probs (large ratios truncated), value loss,
           entropy bonus, k3 KL to the frozen reference policy; new TDs -> priorities; prune; fit
           the tagger; checkpoint
  eval     greedy turn 1 and turn 2 on the held-out split -> ``evaluations`` table

TRL 1.16 has no PPOTrainer and no replay support, so the loop is ours; the token log-prob and
entropy maths are TRL's (see ``cosmocore.model.policy``).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cosmocore import atomic
from cosmocore.memory.buffer import SOURCE_DREAM, Batch, ReplayBuffer
from cosmocore.memory.config import TaggerConfig
from cosmocore.memory.replay_index import BIN_NAMES
from cosmocore.memory.store import Store
from cosmocore.memory.tagger import AffectiveTagger, ArousalNormaliser, Execution, Featurizer, roc_auc, valence_target
from cosmocore.train import checkpoint, evaluation, shared_cache, warmstart
from cosmocore.train.attempt import Attempt
from cosmocore.train.config import ARM_SPECS, ARMS, TrainConfig, buffer_config  # noqa: F401 - re-exported
from cosmocore.train.critic import ValueHead, refit
from cosmocore.train.losses import PPOCoefs, accumulated_reward, padded, ppo_loss, rloo_advantages
from cosmocore.train.targets import Targets
from cosmocore.train.tasks import RunTasks
from miniworld.env import MiniWorldEnv
from miniworld.kinds.registry import messages
from miniworld.sandbox.spark_sandbox import Sandbox
from miniworld.suites import catalog
from miniworld.task import Task

log = logging.getLogger(__name__)

def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively here: a CUDA GPU that supports them, or a Linux CPU
    whose flags list avx512_bf16 or amx_bf16 (elsewhere autocast would emulate them, slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Trainer:
    """Owns policy, critic, tagger, buffer, store and sandbox for one (arm, seed) run."""

    def __init__(self, config: TrainConfig, progress: Callable[[str, int, int], None] | None = None,
                 sandbox: Sandbox | None = None) -> None:
        from cosmocore.model.policy import Policy

        self.cfg = cfg = config
        self.progress = progress or (lambda phase, done, total: None)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.rng = random.Random(cfg.seed)
        self.out = Path(cfg.out)
        suite = catalog.load_suite(cfg.suite)  # bad input fails before the model and Spark load
        self.policy = Policy.load(cfg.model, device=cfg.device, lora=cfg.lora, seed=cfg.seed,
                                  temperature=cfg.temperature)
        self.policy.use_engine(cfg.engine)
        self.arm = ARM_SPECS[cfg.arm]
        self.targets = Targets(self.policy)
        self.store = Store.open(cfg.store)  # after the checks above: a refused run leaves no store
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = self.policy.device
        if cfg.train_layers:
            self.policy.train_top_layers(cfg.train_layers, cache_mb=cfg.frozen_cache_mb)
        self.value_head = ValueHead(self.policy.hidden_size).to(self.device)
        float32 = next(self.policy.model.parameters()).dtype == torch.float32
        self.bf16 = float32 and (native_bf16(self.device) if cfg.bf16_autocast is None else bool(cfg.bf16_autocast))
        params = [p for p in self.policy.model.parameters() if p.requires_grad] + list(self.value_head.parameters())
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr)
        self.reference: torch.nn.Module | None = None  # set after the warm start (see train)
        self.warmed_up = False
        self.tagger_cfg = TaggerConfig()
        self.tagger = AffectiveTagger(self.tagger_cfg)
        self.tagger_fitted = False
        self.featurizer = Featurizer(self.policy.hidden_size, self.tagger_cfg)
        self.arousal = ArousalNormaliser(self.tagger_cfg)
        self.buffer = ReplayBuffer(buffer_config(cfg.arm), seed=cfg.seed)
        self.features: dict[str, torch.Tensor] = {}  # episode_id -> tagger feature (this process)
        self.critic_data: tuple[torch.Tensor, torch.Tensor] | None = None  # (prompt states, rewards) V is fitted on
        self.cycle = 0
        self.eval_cached, self.eval_replies = False, 0  # the last evaluation's (see evaluation)
        self.history: list[dict] = []
        self._owns_sandbox = sandbox is None
        self.sandbox = sandbox or suite.kind.open_sandbox(spark_remote=cfg.spark_remote, workers=cfg.workers,
                                                          timeout_s=cfg.timeout_s)  # python suites need no Spark
        self.tasks = catalog.load_tasks(suite, self.sandbox)
        self.train_tasks = [t for t in self.tasks if t.split == "train"]
        try:
            self.run_tasks = RunTasks.choose(self.tasks, cfg.seed, cfg.practice_tasks, cfg.eval_split, cfg.eval_tasks)
        except ValueError as exc:
            raise ValueError(f"suite {cfg.suite!r}: {exc}") from None
        # the replies' token budget: long enough for every scored task's reference (or as asked, warned)
        self.max_new_tokens = self.targets.reply_budget(self.run_tasks.practice + self.run_tasks.held_out,
                                                        cfg.max_new_tokens)
        self.failed: set[str] = set()  # buffered episodes that failed: what corrective steps draw among

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast of a training-side forward (``bf16_autocast``); backward runs outside it."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    # ------------------------------------------------------------------ day phase
    def rollout(self, tasks: list[Task], turns: int, greedy: bool = False, phase: str = "day") -> list[Attempt]:
        """Episodes of the env, batched: turn 1 for every task, then self-correction turns for
        those not yet correct (all of them when ``greedy``, so that eval can count correct ->
        incorrect flips). The env's step runs each reply and writes the next turn's prompt."""
        env = MiniWorldEnv(self.tasks, self.sandbox, split=None, max_turns=turns)
        _, infos = env.reset_many(len(tasks), options={"task_ids": [t.id for t in tasks], "stop_on_correct": not greedy})
        chats = [info["messages"] for info in infos]
        attempts: list[Attempt] = []
        active = list(range(len(tasks)))
        for turn in range(1, turns + 1):
            if not active:
                break
            # turn-1 prompts come back: the practice set's every cycle (day and eval alike), the
            # held-out split's at cycle 0 and the last: worth keeping (Policy.generate)
            gens = self.policy.generate([chats[i] for i in active], max_new_tokens=self.max_new_tokens,
                                        greedy=greedy, keep_prompts=turn == 1)
            steps = env.step_many([g.text for g in gens], episodes=active)
            results = env.last_results
            still = []
            for i, g, (_, _, terminated, truncated, info) in zip(active, gens, steps):
                attempts.append(Attempt(tasks[i], turn, chats[i][-1]["content"], g, results[i]))
                chats[i] = info["messages"]
                if not (terminated or truncated):
                    still.append(i)
            active = still
            self.progress(phase, turn, turns)
        return attempts

    @torch.no_grad()
    def _values_and_features(self, attempts: list[Attempt]) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        self.policy.model.eval()
        known = [a.generation.prompt_state for a in attempts]
        with self.autocast():
            if all(state is not None for state in known):  # from each reply's own prefill
                pooled = torch.tensor(known, dtype=torch.float32, device=self.device)
            else:
                pooled = self.policy.prompt_states([a.generation.prompt_ids for a in attempts])
            values = self.value_head(pooled).float().cpu().numpy()
            code_pooled = self.policy.pooled_hidden([a.generation.code for a in attempts])
        execution = Execution([a.result.outcome for a in attempts], [a.result.reward for a in attempts],
                              [a.result.checks_passed for a in attempts], [a.result.checks_total for a in attempts])
        feats = self.featurizer(pooled.float().cpu(), code_pooled.float().cpu(), execution)
        return values, feats, pooled.float().cpu()

    def _fit_critic(self, states: torch.Tensor, rewards: np.ndarray) -> None:
        """Add the day's (prompt state, reward) pairs to the critic's data and refit it on them."""
        if self.cfg.value_ridge > 0:
            self.critic_data = refit(self.value_head, self.critic_data, states,
                                     torch.as_tensor(rewards, dtype=torch.float32), self.cfg.value_ridge)

    def day(self) -> dict:
        cfg = self.cfg
        tasks = self.run_tasks.day_draws(cfg.seed, self.cycle, cfg.episodes_per_cycle)
        attempts, shared = self._day_rollout(tasks)
        values, feats, states = self._values_and_features(attempts)
        rewards = np.array([a.result.reward for a in attempts])
        td = rewards - values  # one-step episodes per turn: TD = r - V(s), before V sees them
        self._fit_critic(states, rewards)
        v_target = valence_target([a.result.outcome for a in attempts], [a.result.checks_passed for a in attempts],
                                  [a.result.checks_total for a in attempts], self.tagger_cfg)
        a_target = self.arousal(td)
        v_tag, a_tag, auc = v_target, a_target, float("nan")
        if self.tagger_fitted:  # its AUC is tracked from the first fit; its readings used once it has data
            v_read, a_read = self.tagger.tag(feats)
            correct = np.array([a.result.outcome == "correct" for a in attempts])
            auc = roc_auc(v_read, correct) if 0 < correct.sum() < len(correct) else float("nan")
            if len(self.features) >= self.tagger_cfg.min_fit_examples:
                v_tag, a_tag = v_read, a_read
        rows = []
        for i, a in enumerate(attempts):
            a.value, a.td_error, a.valence, a.arousal = float(values[i]), float(td[i]), float(v_tag[i]), float(a_tag[i])
            episode_id = f"{cfg.run_id}-c{self.cycle}-e{i}"
            self.features[episode_id] = torch.cat([feats[i].float(), torch.tensor([v_target[i], a_target[i]], dtype=torch.float32)])
            rows.append(self._row(episode_id, a))
        self.store.append_episodes(rows)
        if self.arm.replays:
            self.buffer.add([r["episode_id"] for r in rows], td_error=td, valence=[a.valence for a in attempts],
                            arousal=[a.arousal for a in attempts], entropy=[r["entropy"] for r in rows])
            self.failed.update(r["episode_id"] for r in rows if r["reward"] < 1.0)
        self._day_attempts = attempts
        entropy = float(np.mean([np.mean(a.generation.entropy) if a.generation.entropy else 0.0 for a in attempts]))
        conf = [math.exp(lp) for a in attempts for lp in a.generation.logprobs]
        return {"day_reward": float(rewards.mean()), "day_correct": float(np.mean([a.result.outcome == "correct" for a in attempts])),
                "day_attempts": len(attempts), "entropy": entropy,
                "confidence_variance": float(np.var(conf)) if conf else 0.0, "tagger_valence_auc": auc,
                "tokens_generated": int(sum(len(a.generation.completion_ids) for a in attempts)),
                **({"day_cached": True} if shared else {})}

    def _day_rollout(self, tasks: list[Task]) -> tuple[list[Attempt], bool]:
        """The day's attempts, and whether they were read rather than generated. Cycle 1's go
        through ``warmup_cache``: every arm of a seed samples them from the same warm start with
        the same task draws and the same RNG state, so the arms after the first read the first's
        attempts and the RNG state sampling left, and go on exactly as if they had sampled."""
        path = self._shared_day_path(tasks) if self.cycle == 1 else None
        if path is None:
            return self.rollout(tasks, self.cfg.turns), False
        with shared_cache.cache_lock(path):
            if path.exists():
                saved = json.loads(path.read_text())
                by_id = {t.id: t for t in tasks}
                shared_cache.set_rng_state(saved["rng"], self.device)
                self.progress("day", self.cfg.turns, self.cfg.turns)  # a bar waiting on it completes
                return [Attempt.from_json(a, by_id[a["task"]]) for a in saved["attempts"]], True
            attempts = self.rollout(tasks, self.cfg.turns)
            atomic.write_text(path, json.dumps({"attempts": [a.to_json() for a in attempts],
                                                "rng": shared_cache.rng_state(self.device)}))
            return attempts, False

    def _shared_day_path(self, tasks: list[Task]) -> Path | None:
        """Where cycle 1's day is kept beside the warm start it sampled from, keyed by that warm
        start (its settings and its trained weights), the day settings, the drawn tasks and the
        RNG state sampling starts from."""
        if not self.cfg.warmup_cache or self.device.type not in ("cpu", "cuda"):  # generators rng_state knows
            return None
        cfg = self.cfg
        key = shared_cache.key({
            "v": 1, "warmup": warmstart.warmup_key(self), "weights": shared_cache.trained_weights_digest(self.policy.model),
            "turns": cfg.turns, "max_new_tokens": self.max_new_tokens, "temperature": cfg.temperature,
            "timeout_s": cfg.timeout_s, "tasks": [[t.id, t.buggy_code] for t in tasks],
            "rng": shared_cache.rng_state(self.device)})
        return Path(cfg.warmup_cache) / f"day1-{key}.json"

    def _row(self, episode_id: str, a: Attempt) -> dict:
        g = a.generation
        return {"episode_id": episode_id, "run_id": self.cfg.run_id, "arm": self.cfg.arm, "seed": self.cfg.seed,
                "cycle": self.cycle, "task_id": a.task.id, "family": a.task.family, "bug_class": a.task.bug_class,
                "turn": a.turn, "prompt": a.prompt, "completion": g.text, "prompt_ids": list(g.prompt_ids),
                "completion_ids": list(g.completion_ids), "behaviour_logprobs": [float(x) for x in g.logprobs],
                "entropy": float(np.mean(g.entropy)) if g.entropy else 0.0, "outcome": a.result.outcome,
                "checks_passed": a.result.checks_passed, "checks_total": a.result.checks_total,
                "reward": a.result.reward, "valence": a.valence, "arousal": a.arousal, "td_error": a.td_error,
                "priority": float(abs(a.td_error) + self.buffer.config.lam * abs(a.valence) * a.arousal),
                "bin": self._bin(a.valence, a.arousal), "model_version": f"{self.cfg.run_id}@c{self.cycle}"}

    def _bin(self, valence: float, arousal: float) -> str:
        return BIN_NAMES[int(self.buffer.bins_of(np.array([valence]), np.array([arousal]))[0])]

    # ------------------------------------------------------------------ night phase
    def _loss(self, rows: list[dict], advantages: torch.Tensor | None, weights: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """``losses.ppo_loss`` over a minibatch of stored episodes: the policy's forward (with
        the critic's prompt states), the reference's, and the stored behaviour log-probs."""
        cfg = self.cfg
        prompt_ids = [r["prompt_ids"] for r in rows]
        completion_ids = [r["completion_ids"] for r in rows]
        self.policy.model.train()
        logp, ent, mask, pooled = self.policy.sequence_logprobs(prompt_ids, completion_ids)
        with torch.no_grad():
            ref_logp = self.policy.sequence_logprobs(prompt_ids, completion_ids, model=self.reference, extras=False)[0]
        behaviour = padded([r["behaviour_logprobs"] for r in rows], logp)
        values = self.value_head(pooled)
        returns = torch.tensor([float(r["reward"]) for r in rows], device=values.device)
        coefs = PPOCoefs(cfg.clip_eps, cfg.ratio_cap, cfg.vf_coef, cfg.ent_coef, cfg.kl_beta)
        return ppo_loss(logp, behaviour, ref_logp, ent, mask, values, returns, advantages, weights, coefs)

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], self.cfg.max_grad_norm)
        self.optimizer.step()

    @property
    def _nocturnal(self) -> bool:
        """Whether the arm replays through the Dream Queue (80% Dream Queue + 20% uniform)."""
        return self.arm.dream_queue

    def _draw(self, n: int) -> Batch:
        """A nocturnal minibatch from the arm's sampler."""
        return self.buffer.sample_nocturnal(n) if self._nocturnal else self.buffer.sample(n)

    def _episodes(self, ids: list[str]) -> list[dict]:
        table = self.store.read_episodes(episode_ids=list(dict.fromkeys(ids)),
                                         columns=["episode_id", "task_id", "prompt_ids", "completion_ids",
                                                  "behaviour_logprobs", "reward"])
        by_id = {r["episode_id"]: r for r in table.to_pylist()}
        return [by_id[i] for i in ids]

    def night(self, day_stats: dict) -> dict:
        cfg = self.cfg
        if not self.arm.replays:
            return self._night_cocos()
        stats: list[dict] = []
        corrective = cfg.correction_steps  # > 0 only with correction_coef > 0 (TrainConfig checks)
        dream_share, shortfall = [], 0
        started, tokens = time.monotonic(), 0
        for step in range(cfg.nocturnal_steps):
            # ALGO LOGIC: the arm's sampler (80% Dream Queue + 20% uniform for CosmoCore)
            batch = self._draw(cfg.minibatch)
            rows = self._episodes(batch.episode_ids)
            with self.autocast():
                loss, s, new_td = self._loss(rows, None, torch.as_tensor(batch.weights, dtype=torch.float32))
            self._step(loss)
            # replay feedback: new TD errors become priorities
            self.buffer.update_priorities(batch, new_td.float().cpu().numpy())
            tokens += sum(len(r["completion_ids"]) for r in rows)
            dream_share.append(float(np.mean(batch.source == SOURCE_DREAM)))
            shortfall += batch.dream_shortfall
            stats.append(s)
            self.progress("night", step + 1, cfg.nocturnal_steps + corrective)
        for step in range(corrective):
            # The arm's sampler picks which failures are shown their fix again, always `minibatch`
            # of them: the arms differ in which corrections a night makes, not in how many (no
            # TDs: no new priorities).
            failed = [i for i in self.failed if i in self.buffer.slot_of]
            rows = self._episodes(self.buffer.sample_among(failed, cfg.minibatch, nocturnal=self._nocturnal).episode_ids) if failed else []
            with self.autocast():
                correction = self._correction(rows, self._rehearsal(step))
            if correction is not None:
                self._step(cfg.correction_coef * correction)
                stats.append({"correction_nll": correction.item()})
            self.progress("night", cfg.nocturnal_steps + step + 1, cfg.nocturnal_steps + corrective)
        pruned = self.buffer.prune() if self.arm.prunes else []
        strength = self.buffer.tune_pruning(day_stats["confidence_variance"]) if self.arm.prunes else None
        self._fit_tagger()
        out = _means(stats)
        out.update({"dream_share": float(np.mean(dream_share)), "dream_shortfall": shortfall, "pruned": len(pruned),
                    "prune_strength": strength, "buffer_size": len(self.buffer), "dream_queue": self.buffer.dream_size,
                    "nocturnal_tokens_per_s": tokens / max(time.monotonic() - started, 1e-9)})
        return out

    def _night_cocos(self) -> dict:
        """COCOS: online RLOO over two-turn rollouts with the accumulated reward
        R = gamma*r1 + (r2 - r1); turn 1 is context only (no gradient); no replay."""
        cfg = self.cfg
        attempts = self._day_attempts
        by_task: dict[str, list[Attempt]] = {}
        for a in attempts:
            by_task.setdefault(a.task.id, []).append(a)
        rows = []
        for tid, group in by_task.items():
            first = next((a for a in group if a.turn == 1), None)
            second = [a for a in group if a.turn == 2]
            for a in second or [first]:
                r1 = first.result.reward if first else 0.0
                R = accumulated_reward(r1, a.result.reward if a.turn == 2 else None, cfg.cocos_gamma)
                rows.append({"prompt_ids": a.generation.prompt_ids, "completion_ids": a.generation.completion_ids,
                             "behaviour_logprobs": a.generation.logprobs, "reward": R, "task_id": tid})
        adv = rloo_advantages([r["reward"] for r in rows], [r["task_id"] for r in rows])
        stats = []
        for start in range(0, len(rows), cfg.minibatch):
            with self.autocast():
                loss, s, _ = self._loss(rows[start:start + cfg.minibatch], adv[start:start + cfg.minibatch],
                                        torch.ones(len(rows[start:start + cfg.minibatch])))
            self._step(loss)
            stats.append(s)
        self._fit_tagger()
        out = _means(stats)
        out.update({"dream_share": 0.0, "buffer_size": 0, "dream_queue": 0})
        return out

    def _fit_tagger(self) -> None:
        if not self.features:
            return
        stacked = torch.stack(list(self.features.values()))
        self.tagger.fit(stacked[:, :-2], stacked[:, -2].numpy(), stacked[:, -1].numpy(), epochs=self.cfg.tagger_epochs)
        self.tagger_fitted = True

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict:
        """Greedy scores of this cycle (``cosmocore.train.evaluation``)."""
        return evaluation.evaluate(self)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> Path:
        """Model, critic, tagger, optimizer, RNG states, cycle and table versions; atomic."""
        return checkpoint.save(self)

    def resume(self) -> bool:
        """Go on from ``OUT/checkpoint.pt`` if there is one (see ``cosmocore.train.checkpoint``)."""
        return checkpoint.restore(self)

    def _correction(self, rows: list[dict], rehearsal: list[Task] = ()) -> torch.Tensor | None:
        """Token-mean NLL (at temperature 1) of the reference fix after the prompt of each replayed
        failure on a train task: the failure is shown its correction. The replay sampler decides
        which failures come back, so the Dream Queue's 5x replay of cringe failures is 5x more
        correction of exactly those. ``rehearsal`` train tasks join with their own buggy prompt
        (see ``_rehearsal``). Eval tasks are never in the buffer; this uses no eval data."""
        if not self.cfg.correction_coef:
            return None
        train = {t.id: t for t in self.train_tasks}
        failed = [r for r in rows if r["reward"] < 1.0 and r["task_id"] in train]
        if not failed and not rehearsal:
            return None
        prompts = [r["prompt_ids"] for r in failed] + [self.policy.encode_chat(messages(t)) for t in rehearsal]
        return self.nll(prompts, [train[r["task_id"]] for r in failed] + list(rehearsal))

    def _rehearsal(self, step: int) -> list[Task]:
        """``rehearsal_pairs`` random train tasks for a corrective-only step, as the warm start
        draws them: a night that corrects the same few replayed failures again and again
        otherwise overwrites what the warm start taught (held-out fixes were lost). Seeded by
        (seed, cycle, step), so a resumed night draws the same and the day's draws do not move."""
        rng = random.Random(f"{self.cfg.seed}/rehearsal/{self.cycle}/{step}")
        pool = self.run_tasks.warm_pool
        return [pool[rng.randrange(len(pool))] for _ in range(self.cfg.rehearsal_pairs)]

    def nll(self, prompt_ids: list[list[int]], tasks: list[Task]) -> torch.Tensor:
        """The corrective and warm-start loss: ``Targets.nll`` of the tasks' references."""
        return self.targets.nll(prompt_ids, tasks, self.cfg.fix_weight)

    # ------------------------------------------------------------------ warm start
    def warmup(self) -> dict:
        """Supervised fine-tuning on the train split's own pairs (``cosmocore.train.warmstart``)."""
        return warmstart.warmup(self)

    def warmup_cached(self) -> dict:
        """``warmup`` through ``cfg.warmup_cache``, shared by the arms of a seed."""
        return warmstart.warmup_cached(self)

    # ------------------------------------------------------------------ the loop
    def train(self, on_cycle: Callable[[dict], None] | None = None) -> dict:
        """Warm start, cycle 0 (evaluation only: every learning curve gets its starting point),
        then training cycles 1..cycles. Each record is checkpointed, so a resumed run neither
        repeats nor skips one."""
        warm: dict = {}
        if self.cfg.warmup_sft and not self.warmed_up:
            warm = self.warmup_cached()
        if self.reference is None:
            self.reference = self.policy.reference_model()
        while self.cycle <= self.cfg.cycles:
            started = time.monotonic()
            record: dict[str, Any] = {"cycle": self.cycle}
            if self.cycle == 0:
                record.update(warm)
            else:
                day = self.day()
                record.update(day, day_s=time.monotonic() - started)
                mark = time.monotonic()
                record.update(self.night(day), night_s=time.monotonic() - mark)
            mark = time.monotonic()
            record.update(self.evaluate(), eval_s=time.monotonic() - mark, wall_s=time.monotonic() - started)
            self.history.append(record)
            self.checkpoint()
            if on_cycle:
                on_cycle(record)
            self.cycle += 1
        return self.summary()

    def summary(self) -> dict:
        last = self.history[-1] if self.history else {}
        episodes = self.store.read_episodes(filters=[("run_id", "=", self.cfg.run_id)], columns=["episode_id"]).num_rows
        return {"run_id": self.cfg.run_id, "arm": self.cfg.arm, "seed": self.cfg.seed,
                "cycles_completed": sum(h["cycle"] >= 1 for h in self.history), "episodes": episodes,
                "final_hallucination_rate": last.get("eval_hallucination_rate"),
                "final_practice_errors": last.get("practice_errors"), "max_new_tokens": self.max_new_tokens,
                "checkpoint": str(self.out / "checkpoint.pt"), "history": self.history}

    def close(self) -> None:
        if self._owns_sandbox:
            self.sandbox.close()


def cycle_line(r: dict) -> str:
    """One cycle's record as a log line: practice errors every cycle, the held-out rate when scored."""
    line = f"cycle {r['cycle']}: practice errors {r['practice_errors']}"
    if "eval_hallucination_rate" in r:
        line += f", {r['eval_split']} hallucination {r['eval_hallucination_rate']:.3f}"
    if r["cycle"] == 0:  # the initial evaluation: no day, no night
        return line + " (before training)"
    return line + (f", day reward {r['day_reward']:.3f}, dream queue {r.get('dream_queue', 0)}, "
                   f"approx_kl {r.get('approx_kl', float('nan')):.4f}, clip {r.get('clip_frac', float('nan')):.3f}")


def _means(stats: list[dict]) -> dict[str, float]:
    """Per-key mean over optimizer steps, ignoring undefined values (NaN when all are)."""
    out = {}
    for key in dict.fromkeys(k for s in stats for k in s):  # a key some steps lack (correction_nll)
        vals = [s[key] for s in stats if s.get(key) is not None and math.isfinite(s[key])]
        out[key] = float(np.mean(vals)) if vals else float("nan")
    return out
