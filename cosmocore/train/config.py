"""Every knob of a training run (``TrainConfig``), the arms, and the replay ablations as buffer
settings: what a run is, apart from how it runs (``cosmocore.train.trainer``)."""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from cosmocore.memory.config import BufferConfig, option
from cosmocore.model.generation import check_engine



@dataclass(frozen=True)
class Arm:
    """What an arm is, as data: the arms differ only in which experiences they replay (how many
    optimizer steps and corrections a night makes is the same for all). ``replays`` False is the
    online COCOS baseline (RLOO over the day's own two-turn rollouts, no buffer)."""

    name: str
    replays: bool = True
    dream_queue: bool = False  # the nocturnal sampler: 80% Dream Queue + 20% uniform (else uniform)
    prunes: bool = False  # routine successes pruned after each night (adaptive strength)
    buffer: dict[str, Any] = field(default_factory=dict)  # BufferConfig overrides

    def buffer_config(self) -> BufferConfig:
        return BufferConfig(**{**asdict(BufferConfig()), **self.buffer})


_NO_DREAM = {"dream_fraction": 0.0, "dream_rate": 1.0}
_NO_PRUNE = {"prune_valence": 0.0, "prune_arousal": 0.0}
ARM_SPECS: dict[str, Arm] = {a.name: a for a in (
    # PPO with uniform replay of the same buffer, nothing affective
    Arm("uniform", buffer={"alpha": 0.0, **_NO_DREAM, **_NO_PRUNE}),
    # the paper's full method with its buffer values
    Arm("cosmocore", dream_queue=True, prunes=True),
    # valence gating off: no Dream Queue, no affective priority
    Arm("no_prioritization", prunes=True, buffer={"lam": 0.0, **_NO_DREAM}),
    Arm("no_pruning", dream_queue=True, buffer=_NO_PRUNE),
    Arm("cocos", replays=False),
)}
ARMS = tuple(ARM_SPECS)
#: Where a run measures generalisation: the test split (headline figures) or dev (tuning).
EVAL_SPLITS = ("test", "dev")


@dataclass
class TrainConfig:
    """Every knob of a training run, with its default and why it exists."""

    model: str = option("smollm2-135m", "policy: smollm2-135m, tiny, or a Hugging Face id / local path")
    arm: str = option("cosmocore", f"replay arm: {', '.join(ARMS)}")
    suite: str = option("standard", "Mini-World task suite (tasks/NAME.yaml or a path)")
    cycles: int = option(10, "day + night + eval cycles, numbered 1..cycles (cycle 0 = the initial evaluation)")
    seed: int = option(0, "seeds task sampling, generation, init and replay")
    store: str = option("./store", "Delta store URI for episodes/evaluations/buffer_state")
    out: str = option("./runs/train", "directory for checkpoints and the run summary")
    run_id: str | None = option(None, "run id (default: derived from arm and seed)")
    practice_tasks: int = option(12, "train tasks the run practises: the day draws from them (each once per cycle "
                                 "when episodes_per_cycle equals it), they are scored greedily every cycle, and "
                                 "cycles-to-zero-error counts on them; the warm start never sees them (all train "
                                 "tasks when the split holds fewer)")
    episodes_per_cycle: int = option(16, "practice tasks attempted per day phase")
    turns: int = option(2, "attempts per task in the day phase (2 = one self-correction turn)")
    max_new_tokens: int = option(256, "generation budget per attempt (0: the longest reference reply of the "
                                 "run's practice and held-out tasks + 10%, so that every one can be answered)")
    temperature: float = option(0.9, "sampling temperature (behaviour log-probs are stored after it)")
    lr: float = option(1e-5, "Adam learning rate (the paper's 1e-5)")
    clip_eps: float = option(0.2, "PPO clip range for the importance ratio")
    ratio_cap: float = option(5.0, "truncate importance ratios above this (stale replayed samples)")
    vf_coef: float = option(0.5, "value-loss coefficient")
    value_ridge: float = option(1.0, "after each day's TDs the critic is refitted in closed form (ridge, this "
                                "penalty) on the last 4096 executed attempts, so from cycle 2 on TD and arousal "
                                "measure surprise (0 = only the night's gradient steps, at the policy's lr)")
    ent_coef: float = option(0.001, "entropy-bonus coefficient")
    kl_beta: float = option(0.01, "KL-to-reference coefficient (k3 estimator)")
    correction_coef: float = option(0.0, "weight of the corrective term of the correction_steps: the NLL of the "
                                    "task's reference fix after each replayed failure's prompt (0 = pure PPO, as "
                                    "in the paper)")
    fix_weight: float = option(1.0, "loss weight of the reference tokens that differ from the buggy code (the fix itself) "
                               "against 1 for the tokens a copy of the buggy code gets right, in the warm start and the "
                               "corrective term (1 = plain NLL, where the copy dominates the loss)")
    nocturnal_steps: int = option(4, "optimizer steps per nocturnal phase")
    correction_steps: int = option(0, "night steps on the corrective term alone (needs correction_coef > 0), each "
                                   "over `minibatch` replayed failures drawn by the arm's sampler among the buffer's "
                                   "failures: every arm shows the same number of fixes, only which ones differ")
    rehearsal_pairs: int = option(0, "random train (buggy -> reference) pairs added to each corrective-only step "
                                  "(needs correction_steps > 0), as in the warm start: against forgetting what "
                                  "it taught")
    minibatch: int = option(8, "episodes per nocturnal minibatch")
    max_grad_norm: float = option(1.0, "gradient clipping")
    eval_split: str = option("test", "held-out split scored: test (the headline figures) or dev (where settings are "
                             "chosen; nothing is tuned on test)")
    eval_every: int = option(0, "also score the held-out split every N cycles (0 = at cycle 0 and the last cycle "
                             "only; the practice set is scored every cycle)")
    eval_tasks: int = option(0, "held-out tasks scored (0 = all of the split)")
    eval_turns: int = option(2, "greedy attempts per held-out task (2 measures self-correction)")
    cocos_gamma: float = option(0.5, "COCOS accumulated-reward discount")
    cocos_k: int = option(2, "COCOS rollouts per task (RLOO baseline)")
    tagger_epochs: int = option(20, "tagger epochs per night")
    warmup_sft: int = option(0, "supervised warm-start steps on (buggy -> reference) pairs of the train split "
                             "before cycle 0 (COCOS's 'boost model' step); the KL reference is the warmed-up policy")
    sft_batch: int = option(4, "pairs per warm-start step")
    sft_lr: float = option(5e-5, "warm-start Adam learning rate")
    warmup_cache: str | None = option(None, "directory caching warmed-up weights by (model, suite, seed, warm-up "
                                      "settings), so the arms of one seed share one warm start")
    train_layers: int = option(0, "train only the top K transformer blocks (0 = all): backward stops there, "
                               "~2-3x faster steps on a CPU")
    frozen_cache_mb: float = option(512.0, "with train_layers: memory for the frozen lower blocks' output per token "
                                    "sequence, so training-side passes over a sequence seen before run only the top "
                                    "K blocks (Llama-family models without LoRA; 0 = off)")
    bf16_autocast: bool | None = option(False, "bf16 autocast of the training-side passes (warm start, night, value "
                                        "and tagger features) of a float32 model; None = where the CPU has native "
                                        "bf16 (avx512_bf16/amx). Generation stays float32: SmolLM2-135M decoding "
                                        "under bf16 broke 4 of 6 answers into syntax errors")
    engine: str = option("hf", "rollout engine for the day phase and evaluation: hf (transformers generate), torch "
                         "(shared-prefix prefill + prompt-lookup drafts, same greedy tokens; see docs/ENGINES.md), vllm "
                         "(CUDA, the .[vllm] extra)")
    workers: int = option(2, "sandbox workers")
    timeout_s: float = option(30.0, "wall-clock limit per candidate")
    device: str | None = option(None, "cpu, cuda, cuda:N (default: cuda when present)")
    lora: bool | None = option(None, "LoRA adapters (default: on for models over ~1B parameters)")
    spark_remote: str | None = option(None, "Spark Connect server (sc://host:port); default: local")

    def __post_init__(self) -> None:
        if self.arm not in ARMS:
            raise ValueError(f"unknown arm {self.arm!r} (known: {', '.join(ARMS)})")
        check_engine(self.engine)
        for name in ("cycles", "episodes_per_cycle", "turns", "nocturnal_steps", "minibatch", "practice_tasks"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.eval_split not in EVAL_SPLITS:
            raise ValueError(f"--eval-split must be one of {', '.join(EVAL_SPLITS)}, got {self.eval_split!r}")
        for name in ("max_new_tokens", "warmup_sft", "correction_steps", "rehearsal_pairs", "train_layers", "value_ridge",
                     "frozen_cache_mb", "eval_every", "eval_tasks"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
        if self.correction_coef and not self.correction_steps:
            raise ValueError("--correction-coef needs --correction-steps > 0 (the corrective term trains in its own "
                             "steps, the same number for every arm)")
        if self.correction_steps and not self.correction_coef:
            raise ValueError("--correction-steps needs --correction-coef > 0 (its steps train the corrective term alone; "
                             "to turn the term off set correction_steps=0 and rehearsal_pairs=0 too)")
        if self.rehearsal_pairs and not self.correction_steps:
            raise ValueError("--rehearsal-pairs needs --correction-steps > 0 (the pairs join the corrective-only steps)")
        self.run_id = self.run_id or f"{self.arm}-s{self.seed}-{uuid.uuid4().hex[:6]}"


def buffer_config(arm: str) -> BufferConfig:
    """The arm's replay settings (the paper's values for the full arm)."""
    return ARM_SPECS[arm].buffer_config()
