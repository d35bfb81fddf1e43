"""The ``vllm`` engine: vLLM colocated with the trainer on one CUDA device (as TRL's
``vllm_mode="colocate"``), for the day phase and evaluation on a GPU node.

* vLLM runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) from a copy of the policy's
  weights saved once at start; prefix caching shares the common prompt prefix.
* **weight sync**: before a generation, if a trained parameter changed since the last sync
  (torch bumps a tensor's version on every in-place write: optimizer steps, checkpoint loads),
  only the trainable parameters (the top blocks with ``train_layers``) are pushed through vLLM's
  ``load_weights``; the time it took is kept in ``last_sync_s`` and logged.
* replies are cut at EOS or the closing fence of their code block (``stops``): vLLM stops on
  ``"\\n```\\n"`` and the cut is then made at the same token as the other engines.
* **behaviour log-probs are the PyTorch policy's**, recomputed in one batched forward
  (``Policy.sequence_logprobs``, as veRL and TRL do with vLLM), so the PPO ratio's denominator is
  the same function as its numerator; the prompt state comes from that forward too.

CUDA only, behind the optional extra ``pip install '.[vllm]'``; LoRA policies are not supported.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time

import torch

from cosmocore.model.generation import Generation, Policy, PolicyError
from cosmocore.model.stops import stop_length
from miniworld.extract import extract_code


log = logging.getLogger(__name__)
_RECOMPUTE_BATCH = 16


class VLLMEngine:
    """vLLM in this process on the policy's CUDA device; trained blocks synced before each use."""

    name = "vllm"

    def __init__(self, policy: Policy, gpu_memory_utilization: float = 0.3) -> None:
        if policy.device.type != "cuda":
            raise PolicyError(f"engine 'vllm' needs a CUDA device (--device cuda); this policy is on {policy.device}")
        if policy.is_lora:
            raise PolicyError(f"engine 'vllm' does not support LoRA policies ({policy.name!r}): use --engine torch")
        try:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # colocated: same process, same GPU
            import vllm
        except ImportError:
            raise PolicyError("engine 'vllm' needs the vllm extra: pip install '.[vllm]'") from None
        self._vllm = vllm
        self._dir = tempfile.mkdtemp(prefix="cosmocore-vllm-")
        base = policy.model
        base.save_pretrained(self._dir, safe_serialization=True)
        policy.tokenizer.save_pretrained(self._dir)
        dtype = str(next(base.parameters()).dtype).removeprefix("torch.")
        self.llm = vllm.LLM(model=self._dir, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                            enable_prefix_caching=True, seed=policy.seed)
        self._versions = self._trained_versions(policy)
        self.last_sync_s: float | None = None

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_dir", ""), ignore_errors=True)

    @staticmethod
    def _trained_versions(policy: Policy) -> dict[str, int]:
        """Each trainable parameter's in-place write counter (``Tensor._version``)."""
        return {n: p._version for n, p in policy.model.named_parameters() if p.requires_grad}

    def sync(self, policy: Policy) -> None:
        """Push the trainable parameters (only the trained blocks with ``train_layers``) to vLLM."""
        started = time.perf_counter()
        weights = [(n, p.detach()) for n, p in policy.model.named_parameters() if p.requires_grad]
        self.llm.apply_model(lambda model: model.load_weights(weights))
        self.llm.reset_prefix_cache()
        torch.cuda.synchronize(policy.device)
        self.last_sync_s = time.perf_counter() - started
        self._versions = self._trained_versions(policy)
        log.info("vllm: synced %d trained tensors in %.3f s", len(weights), self.last_sync_s)

    def generate(self, policy: Policy, prompts: list[list[int]], max_new_tokens: int, greedy: bool,
                 keep_prompts: bool) -> list[Generation]:
        if self._trained_versions(policy) != self._versions:
            self.sync(policy)
        # vLLM's sampler seeded from torch's RNG, so torch.manual_seed reproduces a day
        seeds = torch.randint(0, 2**31 - 1, (len(prompts),)).tolist()
        params = [self._vllm.SamplingParams(
            n=1, temperature=0.0 if greedy else policy.temperature, max_tokens=max_new_tokens,
            stop_token_ids=list(policy.eos_token_ids), stop=["\n```\n"], include_stop_str_in_output=True,
            seed=None if greedy else seed) for seed in seeds]
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        completions = []
        for out in outputs:
            ids = list(out.outputs[0].token_ids)
            completions.append(ids[:stop_length(policy.tokenizer, ids, policy.eos_token_ids)] or ids[:1])
        results: list[Generation] = []
        for start in range(0, len(prompts), _RECOMPUTE_BATCH):
            chunk = slice(start, start + _RECOMPUTE_BATCH)
            with torch.no_grad():
                lp, ent, _, pooled = policy.sequence_logprobs(prompts[chunk], completions[chunk])
            for j, (prompt, ids) in enumerate(zip(prompts[chunk], completions[chunk])):
                text = policy.tokenizer.decode(ids, skip_special_tokens=True)
                results.append(Generation(prompt_ids=prompt, completion_ids=ids, logprobs=lp[j, :len(ids)].tolist(),
                                          entropy=ent[j, :len(ids)].tolist(), text=text, code=extract_code(text),
                                          prompt_state=pooled[j].float().cpu().tolist()))
        return results
