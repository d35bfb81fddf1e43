"""Tokens/s of the nocturnal update vs a plain TRL ``GRPOTrainer`` update, and of generation.

Both updates run in the same process, on the same weights, the same batch (the same prompt ids,
the same sampled completion ids, the same lengths) and the same device, interleaved round by
round so that background load hits both alike; each is warmed up once and the median of the
timed rounds is reported. Prints ONE JSON object on stdout (logs go to stderr).

What each side measures (one optimizer update on one minibatch of ``--batch`` episodes):

* **nocturnal** (``nocturnal_tokens_per_s``): ``Trainer._loss`` + ``Trainer._step``, the
  trainer's own code, on a ``Trainer`` built with ``Trainer.__new__`` (no Spark, store or
  sandbox) holding only what those two methods read: ``cfg`` (``TrainConfig`` defaults), ``policy``,
  ``reference`` (``policy.reference_model()``), ``value_head`` (``ValueHead``) and ``optimizer``
  (Adam over the policy and the value head, as ``Trainer.__init__`` builds it). That is: a
  train-mode ``policy.sequence_logprobs`` forward, a reference forward (no grad), the clipped-PG
  + value + entropy + k3-KL loss against the stored behaviour log-probs, backward, gradient
  clipping and an Adam step: exactly one step of ``Trainer.night``.
* **nocturnal under bf16 autocast** (``nocturnal_bf16_tokens_per_s``, ``bf16_autocast_speedup`` =
  its time against the plain nocturnal update's): the same update with the forward under
  ``torch.autocast(bfloat16)``, as ``TrainConfig.bf16_autocast`` runs it (``native_bf16`` says
  whether this CPU/GPU has bf16 matmuls; elsewhere autocast emulates them).
* **TRL** (``trl_tokens_per_s``): a ``trl.GRPOTrainer`` (TRL's defaults except: ``beta`` 0.01,
  ``temperature``, ``learning_rate``, ``entropy_coef`` and ``max_completion_length`` set to ours,
  ``gradient_checkpointing`` off as on our side) loaded from the same weights (saved to a temp
  folder, so TRL builds its own policy *and* reference from them). Timed: the reference forward
  exactly as ``_generate_and_score_completions`` runs it
  (``_get_per_token_logps_and_entropies(ref_model, ...)``; in TRL 1.16 it is *not* inside
  ``compute_loss``) + ``GRPOTrainer.training_step`` (TRL's ``compute_loss`` forward with entropies,
  loss, ``accelerator.backward``) with ``_prepare_inputs`` bypassed so no generation happens
  + gradient clipping + the optimizer step and ``zero_grad`` as the HF train loop does them. The
  ``inputs`` dict has the keys ``_generate_and_score_completions`` returns: ``prompt_ids``,
  ``prompt_mask``, ``completion_ids``, ``completion_mask``, ``advantages``,
  ``num_items_in_batch``, ``old_per_token_logps`` (our stored behaviour log-probs) and
  ``ref_per_token_logps`` (from the timed reference forward).
* **generation** (``generation_tokens_per_s``): ``policy.generate`` sampling ``--completion-tokens``
  new tokens for the batch; tokens = completion tokens actually produced.

Tokens are counted the same way for both updates: completion tokens in the batch (what the loss
scores) per second; ``*_total_tokens_per_s`` count prompt + completion tokens.

    .venv/bin/python benchmarks/train_throughput.py --json [--model smollm2-135m|tiny] [--device cpu|cuda]
        [--batch 8] [--completion-tokens 64] [--repeats 3] [--profile]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from cosmocore.model.policy import Policy  # noqa: E402
from cosmocore.train.critic import ValueHead  # noqa: E402
from cosmocore.train.trainer import TrainConfig, Trainer, native_bf16  # noqa: E402
from miniworld.suites import catalog  # noqa: E402
from miniworld.kinds.registry import messages  # noqa: E402

log = logging.getLogger("train_throughput")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------- the batch
def task_messages(suite: str, batch: int) -> list[list[dict]]:
    """Real Mini-World turn-1 prompts (no Spark needed to generate the tasks), cycled to ``batch``."""
    tasks = catalog.generate(catalog.load_suite(suite))
    if not tasks:
        raise SystemExit(f"suite {suite!r} generated no task")
    return [messages(tasks[i % len(tasks)]) for i in range(batch)]


def make_rows(gens, completion_tokens: int, seed: int) -> list[dict]:
    """Replay rows as the store holds them. A completion that stopped early at EOS is kept as is
    (both updates see exactly these ids), so the count of scored tokens is the real one."""
    g = torch.Generator().manual_seed(seed)
    rewards = torch.rand(len(gens), generator=g).tolist()
    return [{"prompt_ids": list(x.prompt_ids), "completion_ids": list(x.completion_ids),
             "behaviour_logprobs": list(x.logprobs), "reward": r} for x, r in zip(gens, rewards)]


# ---------------------------------------------------------------------------- our side
def nocturnal_trainer(policy: Policy, cfg: TrainConfig, bf16: bool = False) -> Trainer:
    """A ``Trainer`` with only what ``_loss`` and ``_step`` read, built as ``__init__`` builds it
    (no store, sandbox, buffer or tagger: those are not touched by one update)."""
    trainer = Trainer.__new__(Trainer)
    trainer.cfg = cfg
    trainer.policy = policy
    trainer.device = policy.device
    trainer.bf16 = bf16
    trainer.value_head = ValueHead(policy.hidden_size).to(policy.device)
    params = [p for p in policy.model.parameters() if p.requires_grad] + list(trainer.value_head.parameters())
    trainer.optimizer = torch.optim.Adam(params, lr=cfg.lr)
    trainer.reference = policy.reference_model()
    return trainer


def nocturnal_update(trainer: Trainer, rows: list[dict]) -> None:
    """One nocturnal optimizer step exactly as ``Trainer.night`` runs it (advantages from the
    same forward's value head, PER weights of 1)."""
    with trainer.autocast():  # bf16 autocast of the forward when the trainer has it on
        loss, _, _ = trainer._loss(rows, None, torch.ones(len(rows)))
    trainer._step(loss)


# ---------------------------------------------------------------------------- TRL's side
class TRLUpdate:
    """A plain ``GRPOTrainer`` on a copy of the same weights, driven one update at a time."""

    def __init__(self, policy: Policy, rows: list[dict], cfg: TrainConfig, workdir: str) -> None:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        device = policy.device
        model_dir = os.path.join(workdir, "model")
        policy.model.save_pretrained(model_dir, safe_serialization=True)
        policy.tokenizer.save_pretrained(model_dir)
        dtype = next(policy.model.parameters()).dtype
        batch = len(rows)
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)
        args = GRPOConfig(
            output_dir=os.path.join(workdir, "out"), report_to="none", logging_steps=10**9, save_strategy="no",
            per_device_train_batch_size=batch, num_generations=batch, gradient_accumulation_steps=1,
            max_completion_length=max(len(r["completion_ids"]) for r in rows),
            beta=cfg.kl_beta, temperature=cfg.temperature, learning_rate=cfg.lr, entropy_coef=cfg.ent_coef,
            epsilon=cfg.clip_eps, max_grad_norm=cfg.max_grad_norm,
            gradient_checkpointing=False,  # our update does not recompute activations either
            use_cpu=device.type == "cpu", bf16=dtype == torch.bfloat16,
            model_init_kwargs={"dtype": dtype}, seed=policy.seed,
        )
        dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": "x"}]] * batch})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.trainer = GRPOTrainer(model=model_dir, reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                                       args=args, train_dataset=dataset, processing_class=policy.tokenizer)
        tr = self.trainer
        tr.create_optimizer()
        tr.current_gradient_accumulation_steps = 1
        tr._prepare_inputs = lambda inputs: inputs  # the batch below *is* the generation batch: no generation
        self.device = tr.accelerator.device
        pad = policy.tokenizer.pad_token_id
        width_p = max(len(r["prompt_ids"]) for r in rows)
        width_c = max(len(r["completion_ids"]) for r in rows)
        prompt_ids = torch.full((batch, width_p), pad, dtype=torch.long)
        prompt_mask = torch.zeros((batch, width_p), dtype=torch.long)
        completion_ids = torch.full((batch, width_c), pad, dtype=torch.long)
        completion_mask = torch.zeros((batch, width_c), dtype=torch.long)
        old = torch.zeros((batch, width_c))
        for i, r in enumerate(rows):  # left-padded prompts, right-padded completions, as TRL pads them
            p, c = r["prompt_ids"], r["completion_ids"]
            prompt_ids[i, width_p - len(p):] = torch.tensor(p)
            prompt_mask[i, width_p - len(p):] = 1
            completion_ids[i, : len(c)] = torch.tensor(c)
            completion_mask[i, : len(c)] = 1
            old[i, : len(c)] = torch.tensor(r["behaviour_logprobs"])
        rewards = torch.tensor([float(r["reward"]) for r in rows])
        adv = (rewards - rewards.mean()) / (rewards.std() + 1e-4)  # GRPO's group-normalised advantage
        d = self.device
        self.inputs = {"prompt_ids": prompt_ids.to(d), "prompt_mask": prompt_mask.to(d),
                       "completion_ids": completion_ids.to(d), "completion_mask": completion_mask.to(d),
                       "advantages": adv.to(d), "num_items_in_batch": completion_mask.sum().to(d),
                       "old_per_token_logps": old.to(d)}

    def reference_logps(self) -> torch.Tensor:
        """The reference forward, as ``_generate_and_score_completions`` runs it when beta != 0."""
        tr, x = self.trainer, self.inputs
        input_ids = torch.cat([x["prompt_ids"], x["completion_ids"]], dim=1)
        attention_mask = torch.cat([x["prompt_mask"], x["completion_mask"]], dim=1)
        with torch.no_grad():
            ref, _, _ = tr._get_per_token_logps_and_entropies(
                tr.ref_model, input_ids, attention_mask, x["completion_ids"].size(1),
                batch_size=tr.args.per_device_train_batch_size)
        return ref

    def update(self) -> None:
        tr = self.trainer
        inputs = dict(self.inputs, ref_per_token_logps=self.reference_logps())
        tr.training_step(tr.model, inputs, inputs["num_items_in_batch"])
        tr.accelerator.clip_grad_norm_(tr.model.parameters(), tr.args.max_grad_norm)
        tr.optimizer.step()
        tr.model.zero_grad()


# ---------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, or an HF id / path")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when present)")
    ap.add_argument("--batch", type=int, default=8, help="episodes per update (and per generate call)")
    ap.add_argument("--completion-tokens", type=int, default=64, help="new tokens sampled per episode")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per path (median reported)")
    ap.add_argument("--suite", default="smoke", help="task suite the prompts come from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="add a torch.profiler top-ops table per update to the JSON")
    ap.add_argument("--json", action="store_true", help="accepted for symmetry with the other benchmarks (output is always JSON)")
    args = ap.parse_args(argv)
    for name in ("batch", "completion_tokens", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def _profile(fn, device: torch.device, rows: int = 12) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        _sync(device)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, attr), reverse=True)[:rows]
    return [{"op": e.key, "self_ms": round(getattr(e, attr) / 1000, 1), "calls": e.count} for e in events]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    torch.manual_seed(args.seed)
    cfg = TrainConfig(model=args.model, device=args.device, seed=args.seed, minibatch=args.batch,
                      max_new_tokens=args.completion_tokens)
    policy = Policy.load(args.model, device=args.device, seed=args.seed, temperature=cfg.temperature)
    device = policy.device
    msgs = task_messages(args.suite, args.batch)

    # 3. generation (also produces the batch both updates train on)
    log.info("generation: warm-up + %d rounds", args.repeats)
    torch.manual_seed(args.seed)
    gens = policy.generate(msgs, max_new_tokens=args.completion_tokens)
    gen_times, gen_tokens = [], []
    for _ in range(args.repeats):
        out: list = []
        gen_times.append(_timed(lambda: out.extend(policy.generate(msgs, max_new_tokens=args.completion_tokens)), device))
        gen_tokens.append(sum(len(g.completion_ids) for g in out))
    rows = make_rows(gens, args.completion_tokens, args.seed)
    completion_tokens = sum(len(r["completion_ids"]) for r in rows)
    prompt_tokens = sum(len(r["prompt_ids"]) for r in rows)

    # 1 + 2. the two updates, same weights, same batch, interleaved
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as workdir:
        log.info("building TRL GRPOTrainer")
        with contextlib.redirect_stdout(io.StringIO()):
            trl_side = TRLUpdate(policy, rows, cfg, workdir)
        ours = nocturnal_trainer(policy, cfg)
        ours_bf16 = nocturnal_trainer(policy, cfg, bf16=True)
        paths = {
            "nocturnal": lambda: nocturnal_update(ours, rows),
            "nocturnal_bf16": lambda: nocturnal_update(ours_bf16, rows),
            "trl": trl_side.update,
        }
        times: dict[str, list[float]] = {k: [] for k in paths}
        for name, fn in paths.items():  # warm-up
            torch.manual_seed(args.seed)
            fn()
        for rnd in range(args.repeats):
            for name, fn in paths.items():
                torch.manual_seed(args.seed + rnd)
                times[name].append(_timed(fn, device))
            log.info("round %d: %s", rnd, {k: round(v[-1], 3) for k, v in times.items()})
        profiles = {k: _profile(fn, device) for k, fn in paths.items()} if args.profile else None
        trl_model_dtype = str(next(trl_side.trainer.model.parameters()).dtype)
        trl_checkpointing = bool(getattr(trl_side.trainer.model, "is_gradient_checkpointing", False))
        trl_params = sum(p.numel() for p in trl_side.trainer.model.parameters() if p.requires_grad)
        del trl_side

    med = {k: statistics.median(v) for k, v in times.items()}
    gen_med = statistics.median(gen_times)
    total = completion_tokens + prompt_tokens
    result = {
        "nocturnal_tokens_per_s": completion_tokens / med["nocturnal"],
        "trl_tokens_per_s": completion_tokens / med["trl"],
        "ratio": med["trl"] / med["nocturnal"],
        "nocturnal_bf16_tokens_per_s": completion_tokens / med["nocturnal_bf16"],
        "bf16_autocast_speedup": med["nocturnal"] / med["nocturnal_bf16"],
        "native_bf16": native_bf16(device),
        "generation_tokens_per_s": statistics.median(gen_tokens) / gen_med,
        "nocturnal_total_tokens_per_s": total / med["nocturnal"],
        "trl_total_tokens_per_s": total / med["trl"],
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "model": args.model,
        "dtype": str(next(policy.model.parameters()).dtype),
        "trl_dtype": trl_model_dtype,
        "trainable_parameters": policy.num_parameters(trainable_only=True),
        "trl_trainable_parameters": trl_params,
        "trl_activation_checkpointing": trl_checkpointing,
        "trl_fused_lm_head_scores": "completion positions only (Triton)" if device.type == "cuda" else
                                    "every position, prompt included (no Triton off CUDA/XPU)",
        "batch": args.batch,
        "completion_tokens": completion_tokens,
        "prompt_tokens": prompt_tokens,
        "padded_prompt_width": max(len(r["prompt_ids"]) for r in rows),
        "max_new_tokens": args.completion_tokens,
        "repeats": args.repeats,
        "seconds": {k: [round(t, 4) for t in v] for k, v in times.items()} | {"generation": [round(t, 4) for t in gen_times]},
        "nocturnal_measure": "Trainer._loss + Trainer._step (Trainer.__new__ with cfg/policy/reference/value_head/Adam): "
                             "train-mode sequence_logprobs forward + reference forward (no grad) + clipped-PG/value/"
                             "entropy/k3-KL loss + backward + grad clip + Adam step (one step of Trainer.night)",
        "trl_measure": "GRPOTrainer (TRL defaults except beta, temperature, lr, entropy_coef, epsilon, "
                       "max_completion_length set to ours and gradient_checkpointing=False): reference forward as "
                       "_generate_and_score_completions runs it (_get_per_token_logps_and_entropies(ref_model)) + "
                       "training_step (compute_loss forward with entropies, loss, accelerator.backward; "
                       "_prepare_inputs bypassed, no generation) + clip_grad_norm_ + optimizer.step + zero_grad, on "
                       "the GRPO inputs dict (prompt_ids/mask, completion_ids/mask, advantages, num_items_in_batch, "
                       "old_per_token_logps = stored behaviour log-probs, ref_per_token_logps)",
        "nocturnal_bf16_measure": "the nocturnal update with its forward under torch.autocast(bfloat16) "
                                  "(TrainConfig.bf16_autocast; backward outside it), same weights and batch",
        "tokens_counted": "completion tokens scored by the update per second (*_total_*: prompt + completion)",
        "generation_measure": "policy.generate, sampling at T=0.9, max_new_tokens per row, the whole batch at once; "
                              "tokens = completion tokens produced",
        "load_avg_1m": os.getloadavg()[0],
        "trl_version": __import__("trl").__version__,
        "torch_version": torch.__version__,
    }
    if profiles is not None:
        result["profile_top_ops"] = profiles
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
