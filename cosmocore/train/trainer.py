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

import base64
import contextlib
import difflib
import hashlib
import json
import logging
import math
import os
import random
import time
import uuid
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from filelock import FileLock

from cosmocore import atomic
from cosmocore.memory.buffer import BIN_NAMES, SOURCE_DREAM, Batch, ReplayBuffer
from cosmocore.memory.config import TaggerConfig
from cosmocore.memory.store import Store
from cosmocore.train.config import ARMS, TrainConfig, buffer_config  # noqa: F401 - re-exported
from cosmocore.train.tasks import RunTasks
from cosmocore.memory.tagger import AffectiveTagger, ArousalNormaliser, Execution, Featurizer, roc_auc, valence_target
from miniworld.suites import catalog
from miniworld.checks import CheckResult
from miniworld.sandbox.spark_sandbox import Result, Sandbox
from miniworld.kinds.registry import messages
from miniworld.task import Task

log = logging.getLogger(__name__)

#: Executed attempts the critic is refitted on each day: the newest, as the policy (and so its
#: prompt states) drifts; a 4096-row least squares is milliseconds.
CRITIC_WINDOW = 4096


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


def cache_lock(path: Path) -> FileLock:
    """An inter-process lock beside a ``warmup_cache`` file: parallel bench jobs of one seed
    compute its warm start (and cycle-0 evaluation) once, the others wait and load it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(f"{path}.lock")


def _rng_state(device: torch.device) -> dict[str, str]:
    """The torch generators sampling draws from (the CPU's, and the device's on CUDA), as text."""
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return {k: base64.b64encode(v.numpy().tobytes()).decode() for k, v in states.items()}


def _set_rng(states: dict[str, str], device: torch.device) -> None:
    def tensor(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    torch.set_rng_state(tensor(states["cpu"]))
    if "cuda" in states:
        torch.cuda.set_rng_state(tensor(states["cuda"]), device)


def _attempt_to_json(a: "Attempt") -> dict:
    r = a.result
    return {"task": a.task.id, "turn": a.turn, "prompt": a.prompt, "generation": asdict(a.generation),
            "result": {**{f.name: getattr(r, f.name) for f in fields(r) if f.name != "checks"},
                       "checks": [asdict(c) for c in r.checks]}}


def _attempt_from_json(d: dict, task: Task) -> "Attempt":
    from cosmocore.model.policy import Generation  # as Trainer loads Policy: transformers only when used

    r = d["result"]
    result = Result(**{**r, "checks": tuple(CheckResult(**c) for c in r["checks"])})
    return Attempt(task, d["turn"], d["prompt"], Generation(**d["generation"]), result)


class ValueHead(torch.nn.Module):
    """V(prompt): a linear critic on the policy's pooled prompt state (its TD error drives
    arousal and replay priority)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.constant_(self.linear.bias, 0.5)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear(pooled.float()).squeeze(-1)

    @torch.no_grad()
    def fit(self, states: torch.Tensor, returns: torch.Tensor, ridge: float) -> None:
        """Least-squares ``V = w.s + b`` over executed attempts, in closed form.

        Why not only gradient steps: at the policy's learning rate, a quick run's handful of night
        steps leaves the critic at its 0.5 init, so every |TD| is ~0.5 and arousal (|TD| normalised)
        cannot tell a surprising failure (on a task the policy used to solve) from a routine one.
        The penalty is ``ridge`` times the mean squared norm of the centred states (so it does not
        depend on the model's width); the dual form is used while there are fewer states than dims.
        """
        x, y = states.double().cpu(), returns.double().cpu()
        x_mean, y_mean = x.mean(0), y.mean()
        xc, yc = x - x_mean, y - y_mean
        lam = ridge * max(float((xc * xc).sum(-1).mean()), 1e-12)
        if len(xc) <= xc.shape[1]:
            w = xc.T @ torch.linalg.solve(xc @ xc.T + lam * torch.eye(len(xc), dtype=xc.dtype), yc)
        else:
            w = torch.linalg.solve(xc.T @ xc + lam * torch.eye(xc.shape[1], dtype=xc.dtype), xc.T @ yc)
        self.linear.weight.copy_(w.unsqueeze(0))
        self.linear.bias.fill_(float(y_mean - x_mean @ w))


@dataclass
class Attempt:
    """One generated and executed attempt (a row of ``episodes``)."""

    task: Task
    turn: int
    prompt: str
    generation: Any
    result: Result
    value: float = 0.0
    td_error: float = 0.0
    valence: float = 0.0
    arousal: float = 0.0


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
        self._ref_ids: dict[str, list[int]] = {}  # task id -> reference completion ids (see _reference_ids)
        self._fix_masks: dict[str, list[int]] = {}  # task id -> fix mask (see _fix_mask)
        self.cycle = 0
        self._eval_cached, self._eval_replies = False, 0
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
        self.failed: set[str] = set()  # buffered episodes that failed: what corrective steps draw among

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast of a training-side forward (``bf16_autocast``); backward runs outside it."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    # ------------------------------------------------------------------ day phase
    def _attempts(self, tasks: list[Task], histories: list[list[tuple[str, str]]], turn: int, greedy: bool,
                  recurring: bool = False) -> list[Attempt]:
        msgs = [messages(t, h) for t, h in zip(tasks, histories)]
        gens = self.policy.generate(msgs, max_new_tokens=self.cfg.max_new_tokens, greedy=greedy, keep_prompts=recurring)
        results = self.sandbox.evaluate_many([(t, g.code) for t, g in zip(tasks, gens)])
        return [Attempt(t, turn, m[-1]["content"], g, r) for t, m, g, r in zip(tasks, msgs, gens, results)]

    def rollout(self, tasks: list[Task], turns: int, greedy: bool = False, phase: str = "day") -> list[Attempt]:
        """Turn 1 for every task, then self-correction turns for those not yet correct (all of
        them when ``greedy``, so that eval can count correct -> incorrect flips)."""
        attempts: list[Attempt] = []
        histories: list[list[tuple[str, str]]] = [[] for _ in tasks]
        active = list(range(len(tasks)))
        for turn in range(1, turns + 1):
            if not active:
                break
            # turn-1 prompts come back: the practice set's every cycle (day and eval alike), the
            # held-out split's at cycle 0 and the last: worth keeping (Policy.generate)
            batch = self._attempts([tasks[i] for i in active], [histories[i] for i in active], turn, greedy,
                                   recurring=turn == 1)
            attempts += batch
            for i, a in zip(active, batch):
                histories[i].append((a.generation.code, a.result.feedback))
            active = [i for i, a in zip(active, batch) if greedy or a.result.outcome != "correct"]
            self.progress(phase, turn, turns)
        return attempts

    @torch.no_grad()
    def _values_and_features(self, attempts: list[Attempt]) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        self.policy.model.eval()
        known = [a.generation.prompt_state for a in attempts]
        with self._autocast():
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
        if self.cfg.value_ridge <= 0:
            return
        new = (states.float(), torch.as_tensor(rewards, dtype=torch.float32))
        if self.critic_data is not None:
            new = tuple(torch.cat([old, add])[-CRITIC_WINDOW:] for old, add in zip(self.critic_data, new))
        self.critic_data = new
        self.value_head.fit(*new, ridge=self.cfg.value_ridge)

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
        if cfg.arm != "cocos":
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
        with cache_lock(path):
            if path.exists():
                saved = json.loads(path.read_text())
                by_id = {t.id: t for t in tasks}
                _set_rng(saved["rng"], self.device)
                self.progress("day", self.cfg.turns, self.cfg.turns)  # a bar waiting on it completes
                return [_attempt_from_json(a, by_id[a["task"]]) for a in saved["attempts"]], True
            attempts = self.rollout(tasks, self.cfg.turns)
            atomic.write_text(path, json.dumps({"attempts": [_attempt_to_json(a) for a in attempts],
                                                "rng": _rng_state(self.device)}))
            return attempts, False

    def _shared_day_path(self, tasks: list[Task]) -> Path | None:
        """Where cycle 1's day is kept beside the warm start it sampled from, keyed by that warm
        start (its settings and its trained weights), the day settings, the drawn tasks and the
        RNG state sampling starts from."""
        if not self.cfg.warmup_cache or self.device.type not in ("cpu", "cuda"):  # generators _rng_state knows
            return None
        cfg = self.cfg
        weights = hashlib.sha256()  # what it sampled from, whatever put them there (a resume included)
        for name, param in self.policy.model.named_parameters():
            if param.requires_grad:
                weights.update(name.encode())
                weights.update(param.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
        ident = {"v": 1, "warmup": self._warmup_key(), "weights": weights.hexdigest(), "turns": cfg.turns,
                 "max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "timeout_s": cfg.timeout_s,
                 "tasks": [[t.id, t.buggy_code] for t in tasks], "rng": _rng_state(self.device)}
        key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]
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
        """Clipped PG + value + entropy + KL over a minibatch of stored episodes. Without
        ``advantages`` they are ``r - V(s)`` from this same forward (normalised over the batch):
        no separate baseline pass."""
        cfg = self.cfg
        prompt_ids = [r["prompt_ids"] for r in rows]
        completion_ids = [r["completion_ids"] for r in rows]
        self.policy.model.train()
        logp, ent, mask, pooled = self.policy.sequence_logprobs(prompt_ids, completion_ids)
        with torch.no_grad():
            ref_logp = self.policy.sequence_logprobs(prompt_ids, completion_ids, model=self.reference, extras=False)[0]
        old = torch.zeros_like(logp)
        for i, r in enumerate(rows):
            old[i, : len(r["behaviour_logprobs"])] = torch.tensor(r["behaviour_logprobs"], device=logp.device)
        log_ratio = (logp - old) * mask
        ratio = torch.exp(log_ratio).clamp(max=cfg.ratio_cap)  # truncated importance ratio
        values = self.value_head(pooled)
        returns = torch.tensor([float(r["reward"]) for r in rows], device=values.device)
        if advantages is None:
            advantages = (returns - values).detach().float()
            if len(advantages) > 1 and advantages.std() > 1e-8:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        adv = advantages.to(logp.device).unsqueeze(-1)
        pg = -torch.min(ratio * adv, ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv)
        tokens = mask.sum(-1).clamp_min(1.0)
        per_seq = lambda x: (x * mask).sum(-1) / tokens  # noqa: E731 - token mean per sequence
        w = weights.to(logp.device)
        pg_loss = (w * per_seq(pg)).mean()
        delta = (ref_logp - logp) * mask  # masked first: padding must not overflow exp()
        # k3 estimator (always >= 0), importance-weighted like the PG term: replayed tokens were
        # sampled by an older policy, and unweighted, exp(delta) on a token the policy has since
        # pushed far down explodes (kl_ref 38.8 by cycle 3 of a quick run, its gradient then
        # filling the clipped norm); weighted, a token's pull is bounded by ref / behaviour.
        kl = per_seq(ratio.detach() * (torch.exp(delta) - delta - 1.0)).mean()
        v_loss = (w * (values - returns) ** 2).mean()
        entropy = per_seq(ent).mean()
        loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy + cfg.kl_beta * kl
        with torch.no_grad():
            approx_kl = per_seq((ratio - 1) - log_ratio).mean().item()
            clip_frac = per_seq(((ratio - 1).abs() > cfg.clip_eps).float()).mean().item()
            var = returns.var(unbiased=False).item()
            ev = 1 - (returns - values).var(unbiased=False).item() / var if var > 0 else float("nan")
        stats = {"loss": loss.item(), "pg_loss": pg_loss.item(), "value_loss": v_loss.item(), "update_entropy": entropy.item(),
                 "kl_ref": kl.item(), "approx_kl": approx_kl, "clip_frac": clip_frac, "explained_variance": ev}
        return loss, stats, (returns - values).detach()

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], self.cfg.max_grad_norm)
        self.optimizer.step()

    @property
    def _nocturnal(self) -> bool:
        """Whether the arm replays through the Dream Queue (80% Dream Queue + 20% uniform)."""
        return self.cfg.arm in ("cosmocore", "no_pruning")

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
        if cfg.arm == "cocos":
            return self._night_cocos()
        stats: list[dict] = []
        corrective = cfg.correction_steps  # > 0 only with correction_coef > 0 (TrainConfig checks)
        dream_share, shortfall = [], 0
        started, tokens = time.monotonic(), 0
        for step in range(cfg.nocturnal_steps):
            # ALGO LOGIC: the arm's sampler (80% Dream Queue + 20% uniform for CosmoCore)
            batch = self._draw(cfg.minibatch)
            rows = self._episodes(batch.episode_ids)
            with self._autocast():
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
            with self._autocast():
                correction = self._correction(rows, self._rehearsal(step))
            if correction is not None:
                self._step(cfg.correction_coef * correction)
                stats.append({"correction_nll": correction.item()})
            self.progress("night", cfg.nocturnal_steps + step + 1, cfg.nocturnal_steps + corrective)
        pruned = self.buffer.prune() if cfg.arm in ("cosmocore", "no_prioritization") else []
        strength = self.buffer.tune_pruning(day_stats["confidence_variance"]) if cfg.arm in ("cosmocore", "no_prioritization") else None
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
        rows, returns = [], []
        for tid, group in by_task.items():
            first = next((a for a in group if a.turn == 1), None)
            second = [a for a in group if a.turn == 2]
            for a in second or [first]:
                r1 = first.result.reward if first else 0.0
                r2 = a.result.reward
                R = cfg.cocos_gamma * r1 + (r2 - r1) if a.turn == 2 else r1
                rows.append({"prompt_ids": a.generation.prompt_ids, "completion_ids": a.generation.completion_ids,
                             "behaviour_logprobs": a.generation.logprobs, "reward": R, "task_id": tid})
                returns.append(R)
        rets = torch.tensor(returns)
        # RLOO: baseline = mean of the other rollouts of the same task (else the batch mean)
        adv = torch.zeros_like(rets)
        for i, r in enumerate(rows):
            others = [returns[j] for j, q in enumerate(rows) if q["task_id"] == r["task_id"] and j != i]
            base = float(np.mean(others)) if others else float(rets.mean())
            adv[i] = rets[i] - base
        stats = []
        for start in range(0, len(rows), cfg.minibatch):
            with self._autocast():
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
        """Greedy scores of this cycle: the practice set every cycle (turn 1: cycles-to-zero-error
        counts on it), the held-out split (``eval_split``, all its turns) at cycle 0, the last
        cycle and every ``eval_every`` cycles. Cycle 0's are read from the arms' shared cache."""
        cfg, tasks = self.cfg, self.run_tasks
        self._eval_replies = 0
        held = self.cycle in (0, cfg.cycles) or bool(cfg.eval_every and self.cycle % cfg.eval_every == 0)
        out: dict[str, Any] = {}
        practice = self._scored("practice", tasks.practice, 1)
        out["practice_errors"] = sum(r["outcome"] != "correct" for r in practice)
        out["practice_hallucination_rate"] = out["practice_errors"] / len(practice)
        rows = practice
        if held:
            scored = self._scored(cfg.eval_split, tasks.held_out, cfg.eval_turns)
            first = [r for r in scored if r["turn"] == 1]
            out.update({"eval_split": cfg.eval_split,
                        "eval_hallucination_rate": float(np.mean([r["outcome"] != "correct" for r in first])),
                        "eval_reward": float(np.mean([r["reward"] for r in first])),
                        "eval_outcomes": {o: sum(r["outcome"] == o for r in first)
                                          for o in sorted({r["outcome"] for r in first})}})
            rows = rows + scored
        self.store.append_evaluations(
            [{"eval_id": f"{cfg.run_id}-c{self.cycle}-{r['split']}-{r['task_id']}-t{r['turn']}-k0",
              "run_id": cfg.run_id, "arm": cfg.arm, "seed": cfg.seed, "cycle": self.cycle, "sample": 0,
              "model_version": f"{cfg.run_id}@c{self.cycle}", **r} for r in rows])
        out["eval_replies"] = self._eval_replies  # decoded now (a cached cycle 0 decodes none): the cost model's count
        if self._eval_cached:
            out["eval_cached"] = True
        return out

    def _scored(self, split: str, tasks: list[Task], turns: int) -> list[dict]:
        """Greedy attempts at ``tasks`` as evaluation rows (without the run's ids); at cycle 0
        through the seed's shared cache, which the arms after the first read."""
        shared = self._shared_eval_path(tasks, turns) if self.cycle == 0 else None
        with cache_lock(shared) if shared is not None else contextlib.nullcontext():
            if shared is not None and shared.exists():
                self._eval_cached = True
                self.progress("eval", turns, turns)  # a bar waiting on it completes
                return json.loads(shared.read_text())
            self._eval_cached = False
            attempts = self.rollout(tasks, turns, greedy=True, phase="eval")
            self._eval_replies += len(attempts)
            rows = [{"split": split, "group": self.run_tasks.group(a.task) if split != "practice" else None,
                     "task_id": a.task.id, "family": a.task.family, "bug_class": a.task.bug_class,
                     "turn": a.turn, "outcome": a.result.outcome, "checks_passed": a.result.checks_passed,
                     "checks_total": a.result.checks_total, "reward": a.result.reward,
                     "entropy": float(np.mean(a.generation.entropy)) if a.generation.entropy else 0.0}
                    for a in attempts]
            if shared is not None:
                atomic.write_text(shared, json.dumps(rows))
            return rows

    def _shared_eval_path(self, tasks: list[Task], turns: int) -> Path | None:
        """Where cycle 0's evaluation is kept beside the warm start it measures (``warmup_cache``):
        every arm of a seed starts from the same weights and evaluates greedily, so the arms
        after the first read that evaluation instead of decoding it again."""
        if not self.cfg.warmup_cache:
            return None
        cfg = self.cfg
        ident = {"v": 2, "warmup": self._warmup_key(), "warmed_up": self.warmed_up, "turns": turns,
                 "max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "timeout_s": cfg.timeout_s,
                 "tasks": [[t.id, t.buggy_code] for t in tasks]}
        key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]
        return Path(cfg.warmup_cache) / f"eval0-{key}.json"

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> Path:
        """Model, critic, tagger, optimizer, RNG states, cycle and table versions; atomic."""
        path = self.out / "checkpoint.pt"
        tmp = self.out / f".checkpoint-{uuid.uuid4().hex}.pt"
        self.buffer.save(self.store)
        torch.save({"cycle": self.cycle, "config": asdict(self.cfg), "policy": self.policy.state_dict_for_checkpoint(),
                    "value_head": self.value_head.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "tagger": self.tagger.state_dict(), "tagger_fitted": self.tagger_fitted,
                    "warmed_up": self.warmed_up,
                    "reference": self._reference_state() if self.warmed_up and not self.policy.is_lora else None,
                    "arousal": self.arousal.state_dict(), "features": self.features, "critic_data": self.critic_data,
                    "history": self.history,
                    "rng": {"python": self.rng.getstate(), "global_python": random.getstate(),
                            "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                            "buffer": self.buffer.rng.bit_generator.state},
                    "table_versions": self.store.versions()}, tmp)
        os.replace(tmp, path)
        return path

    def _reference_state(self) -> dict:
        """The KL anchor's weights; only its trained blocks when the rest is frozen (as loaded)."""
        return self.policy.trained_only(self.reference.state_dict())

    def resume(self) -> bool:
        path = self.out / "checkpoint.pt"
        if not path.exists():
            return False
        state = torch.load(path, weights_only=False)
        self.cfg.run_id = state["config"]["run_id"]  # same ids -> idempotent re-appends
        self.policy.load_state_dict_from_checkpoint(state["policy"])
        self.reference = self.policy.reference_model()
        if state.get("reference") is not None:  # the KL anchor is the warmed-up policy
            self.reference.load_state_dict(state["reference"], strict=not state["policy"].get("partial"))
        self.warmed_up = state.get("warmed_up", False)
        self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.tagger.load_state_dict(state["tagger"])
        self.tagger_fitted = state["tagger_fitted"]
        self.arousal.load_state_dict(state["arousal"])
        self.features = state["features"]
        self.critic_data = state.get("critic_data")
        self.history = state["history"]
        self.cycle = state["cycle"] + 1
        self.rng.setstate(state["rng"]["python"])
        random.setstate(state["rng"]["global_python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        # Rows of the cycles after the checkpoint are redone whole, not merged with the killed run's.
        self.store.discard_after(self.cfg.run_id, state["cycle"])
        # The index as of this checkpoint: a run killed between saving the index and saving the
        # checkpoint left a newer one (that cycle's night already applied), which is redone now.
        version = state.get("table_versions", {}).get("buffer_state")
        self.buffer = ReplayBuffer.rebuild(self.store, buffer_config(self.cfg.arm), seed=self.cfg.seed,
                                           state_version=version)
        self.buffer.rng.bit_generator.state = state["rng"]["buffer"]
        mine = self.store.read_episodes(filters=[("run_id", "=", self.cfg.run_id)], columns=["episode_id", "reward"])
        self.failed = {r["episode_id"] for r in mine.to_pylist() if r["reward"] is not None and r["reward"] < 1.0}
        return True

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
        return self._nll(prompts, [train[r["task_id"]] for r in failed] + list(rehearsal))

    def _rehearsal(self, step: int) -> list[Task]:
        """``rehearsal_pairs`` random train tasks for a corrective-only step, as the warm start
        draws them: a night that corrects the same few replayed failures again and again
        otherwise overwrites what the warm start taught (held-out fixes were lost). Seeded by
        (seed, cycle, step), so a resumed night draws the same and the day's draws do not move."""
        rng = random.Random(f"{self.cfg.seed}/rehearsal/{self.cycle}/{step}")
        pool = self.run_tasks.warm_pool
        return [pool[rng.randrange(len(pool))] for _ in range(self.cfg.rehearsal_pairs)]

    def _nll(self, prompt_ids: list[list[int]], tasks: list[Task]) -> torch.Tensor:
        """Weighted token-mean NLL (at temperature 1) of each task's reference after its prompt,
        the fix's tokens weighted ``fix_weight`` (see ``_fix_mask``)."""
        temperature, self.policy.temperature = self.policy.temperature, 1.0
        try:
            logp, _, mask, _ = self.policy.sequence_logprobs(prompt_ids, [self._reference_ids(t) for t in tasks],
                                                             extras=False)
        finally:
            self.policy.temperature = temperature
        weights = mask.clone()
        if self.cfg.fix_weight != 1.0:
            for i, t in enumerate(tasks):
                fix = torch.tensor(self._fix_mask(t), dtype=weights.dtype, device=weights.device)
                weights[i, : len(fix)] += (self.cfg.fix_weight - 1.0) * fix
        return -(logp * weights).sum() / weights.sum()

    # ------------------------------------------------------------------ warm start
    def _reference_ids(self, task: Task) -> list[int]:
        """The completion a perfect answer would be: the reference in a code block, then EOS
        (memoised per task: the warm start and every night ask again)."""
        if task.id not in self._ref_ids:
            eos = self.policy.eos_token_ids[:1]
            code = f"```python\n{task.reference_code}```"
            self._ref_ids[task.id] = self.policy.tokenizer(code, add_special_tokens=False)["input_ids"] + eos
        return self._ref_ids[task.id]

    def _fix_mask(self, task: Task) -> list[int]:
        """1 on the reference completion's tokens a copy of the buggy code would get wrong: those
        replaced or inserted by the fix, and the token after a deletion. Hand-written over
        difflib: the loss needs token positions, which no diff library reports for us. Memoised
        per task, like the reference ids."""
        if task.id in self._fix_masks:
            return self._fix_masks[task.id]
        ref = self._reference_ids(task)
        buggy = self.policy.tokenizer(f"```python\n{task.buggy_code}```", add_special_tokens=False)["input_ids"]
        buggy += self.policy.eos_token_ids[:1]  # a copy ends as the reference does
        out = [0] * len(ref)
        for tag, _, _, j1, j2 in difflib.SequenceMatcher(None, buggy, ref, autojunk=False).get_opcodes():
            if tag in ("replace", "insert"):
                out[j1:j2] = [1] * (j2 - j1)
            elif tag == "delete" and j1 < len(ref):
                out[j1] = 1
        self._fix_masks[task.id] = out
        return out

    def _sft_pairs(self) -> list[tuple[list[int], list[int]]]:
        return [(self.policy.encode_chat(messages(t)), self._reference_ids(t)) for t in self.run_tasks.warm_pool]

    def warmup(self) -> dict:
        """Supervised fine-tuning on the train split's own (buggy prompt -> reference code)
        pairs, never the eval split. Hand-written: it is ten lines over ``sequence_logprobs``
        (at temperature 1), where TRL's SFTTrainer would need its own dataset and loop. Its own
        RNG stream, so the warm start depends only on its settings (what ``warmup_cache`` keys
        on) and the cycles' task draws do not depend on whether it ran."""
        cfg = self.cfg
        started = time.monotonic()
        opt = torch.optim.Adam([p for p in self.policy.model.parameters() if p.requires_grad], lr=cfg.sft_lr)
        pairs = list(zip(self._sft_pairs(), self.run_tasks.warm_pool))
        rng = random.Random(f"{cfg.seed}/warmup")
        losses = []
        self.policy.model.train()
        for step in range(cfg.warmup_sft):
            batch = [pairs[rng.randrange(len(pairs))] for _ in range(cfg.sft_batch)]
            with self._autocast():
                loss = self._nll([pair[0] for pair, _ in batch], [task for _, task in batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.model.parameters(), cfg.max_grad_norm)
            opt.step()
            losses.append(loss.item())
            self.progress("warm-up", step + 1, cfg.warmup_sft)
        self.warmed_up = True
        return {"sft_loss_first": losses[0], "sft_loss_last": losses[-1], "sft_steps": len(losses),
                "warmup_s": time.monotonic() - started}

    def _warmup_key(self) -> str:
        """Everything the warmed-up weights depend on: model, device dtype, which parameters
        train, the exact SFT pairs, seed and SFT settings."""
        cfg = self.cfg
        pairs = hashlib.sha256(json.dumps(self._sft_pairs()).encode()).hexdigest()
        trainable = [n for n, p in self.policy.model.named_parameters() if p.requires_grad]
        ident = {"v": 1, "model": cfg.model, "lora": self.policy.is_lora, "device": self.device.type,
                 "dtype": str(next(self.policy.model.parameters()).dtype), "trainable": trainable, "pairs": pairs,
                 "seed": cfg.seed, "steps": cfg.warmup_sft, "batch": cfg.sft_batch, "lr": cfg.sft_lr,
                 **({"fix_weight": cfg.fix_weight} if cfg.fix_weight != 1.0 else {}),
                 **({"bf16_autocast": True} if self.bf16 else {}), "max_grad_norm": cfg.max_grad_norm,
                 **({"frozen_cache": True} if self.policy.frozen_prefix is not None else {})}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]

    def warmup_cached(self) -> dict:
        """``warmup`` through ``cfg.warmup_cache``: load the trainable weights saved by an
        earlier run with the same key (bit-identical to recomputing them), else compute and save
        them atomically (a killed writer leaves no half file; racing writers both end complete)."""
        cfg = self.cfg
        if not cfg.warmup_cache:
            return self.warmup()
        started = time.monotonic()
        path = Path(cfg.warmup_cache) / f"warmup-{self._warmup_key()}.pt"
        with cache_lock(path):  # a parallel job of the same seed waits here, then loads it
            return self._warmup_cached(path, started)

    def _warmup_cached(self, path: Path, started: float) -> dict:
        if path.exists():
            saved = torch.load(path, weights_only=True)
            params = dict(self.policy.model.named_parameters())
            with torch.no_grad():
                for name, value in saved["weights"].items():
                    params[name].copy_(value)
            self.warmed_up = True
            return {**saved["stats"], "warmup_s": time.monotonic() - started, "warmup_cached": True}
        stats = self.warmup()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}-{uuid.uuid4().hex}")
        weights = {n: p.detach().to("cpu", copy=True) for n, p in self.policy.model.named_parameters() if p.requires_grad}
        torch.save({"weights": weights, "stats": {k: v for k, v in stats.items() if k != "warmup_s"}}, tmp)
        os.replace(tmp, path)
        return {**stats, "warmup_cached": False}

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
                "final_practice_errors": last.get("practice_errors"),
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
