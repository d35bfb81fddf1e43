"""The ``vllm`` engine on a GPU node: greedy replies equal the torch engine's (f32 weights), the
behaviour log-probs are the PyTorch policy's, and a trained block reaches vLLM after a step.
Needs CUDA and the ``.[vllm]`` extra: skipped otherwise (the CPU-side refusal is tested here)."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from cosmocore.model.policy import Policy, PolicyError
from miniworld.suites import catalog
from miniworld.kinds.registry import messages

NEEDS_GPU = pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None,
                               reason="needs CUDA and the vllm extra")


def test_vllm_is_refused_on_the_cpu_with_one_line(tmp_path):
    policy = Policy.load("tiny", device="cpu", cache_dir=str(tmp_path))
    with pytest.raises(PolicyError, match="vllm") as info:
        policy.use_engine("vllm")
    assert "\n" not in str(info.value)
    assert policy.engine == "hf"


@NEEDS_GPU
@pytest.mark.slow
def test_vllm_greedy_matches_and_syncs_the_trained_blocks(tmp_path):
    policy = Policy.load("tiny", device="cuda", cache_dir=str(tmp_path))
    policy.model.float()  # exactness is checked in f32
    policy.train_top_layers(1)
    tasks = catalog.generate(catalog.load_suite("quick"))
    prompts = [messages(t) for t in tasks[:8]]
    policy.use_engine("torch")
    ref = policy.generate(prompts, max_new_tokens=32, greedy=True)
    policy.use_engine("vllm")
    got = policy.generate(prompts, max_new_tokens=32, greedy=True)
    same = sum(g.completion_ids == r.completion_ids for g, r in zip(got, ref))
    assert same == len(prompts), f"{same}/{len(prompts)} greedy replies identical"
    lp, _, _, _ = policy.sequence_logprobs([g.prompt_ids for g in got], [g.completion_ids for g in got])
    for i, g in enumerate(got):
        torch.testing.assert_close(lp[i, :len(g.logprobs)].cpu(), torch.tensor(g.logprobs), atol=1e-4, rtol=0)
    top = [p for p in policy.model.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in top:
            p.mul_(0.0)  # an in-place write, as an optimizer step is
    after = policy.generate(prompts[:2], max_new_tokens=8, greedy=True)
    assert policy._engine.last_sync_s is not None
    policy.use_engine("torch")
    assert [g.completion_ids for g in after] == [g.completion_ids for g in policy.generate(prompts[:2], 8, True)]
