"""Rollout engines: the stop rule, prompt-lookup drafts, and the ``torch`` engine giving the
``hf`` engine's greedy replies and the policy's own log-probs, on the real ``tiny`` model (f32)
and real Mini-World task prompts (no Spark needed to build them)."""
from __future__ import annotations

import pytest
import torch

from cosmocore.model.generation import ENGINES, check_engine
from cosmocore.model.policy import Policy
from cosmocore.model.prompt_lookup import draft
from cosmocore.model.stops import CodeBlockStop, stop_length
from cosmocore.model.torch_engine import common_prefix
from miniworld.suites import catalog
from miniworld.kinds.registry import messages

NEW = 24


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Policy:
    return Policy.load("tiny", device="cpu", cache_dir=str(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="module")
def task_prompts() -> list[list[dict]]:
    """Eval-like prompts: distinct quick-suite tasks (one shared system prompt), a repeat of the
    first (two samples of one task) and a short chat with its own system prompt."""
    tasks = catalog.generate(catalog.load_suite("quick"))
    own = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Fix the join."}]
    return [messages(t) for t in tasks[:4]] + [messages(tasks[0]), own]


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_stop_length_cuts_right_after_the_closing_fence(tiny):
    tok = tiny.tokenizer
    reply = "Here is the fix:\n```python\ndef transform(df):\n    return df\n```\nIt drops the bad join."
    ids = _ids(tok, reply)
    n = stop_length(tok, ids, eos_ids=[])
    assert n < len(ids)
    assert tok.decode(ids[:n]).rstrip("\n").endswith("return df\n```")
    opened = _ids(tok, "```python\nx = 1\n")  # an open block alone does not stop a reply
    assert stop_length(tok, opened, eos_ids=[]) == len(opened)
    assert stop_length(tok, ids, eos_ids=[ids[1]]) == 2  # EOS first wins


def test_a_fence_split_across_tokens_counts_once(tiny):
    tok = tiny.tokenizer
    one, two = _ids(tok, "`"), _ids(tok, "``")
    assert len(one) == len(two) == 1
    stop = CodeBlockStop(tok, 1)
    pieces = two + one + _ids(tok, "\nx\n") + one + two  # "``" "`" ... "`" "``"
    fired = [stop.push(0, t) for t in pieces]
    assert fired == [False] * (len(pieces) - 1) + [True]


def test_prompt_lookup_drafts_what_followed_the_same_ngram():
    seq = torch.tensor([5, 1, 2, 3, 4, 9, 9, 1, 2, 3])
    assert draft(seq, 3) == [4, 9, 9]
    assert draft(seq, 1) == [4]
    assert draft(torch.tensor([1, 2, 3, 7, 2, 3]), 2) == [7, 2]  # the bigram, when no trigram recurs
    assert draft(torch.tensor([1, 2, 3, 4]), 3) == []
    assert draft(seq, 0) == []


def test_common_prefix():
    assert common_prefix([(1, 2, 3), (1, 2, 4), (1, 2)]) == 2
    assert common_prefix([(1, 2), (3,)]) == 0


def test_torch_engine_greedy_is_the_hf_engine_greedy(tiny, task_prompts):
    """Evaluation is greedy: the engine must give the same tokens (f32), the same log-probs
    and the same prompt states as ``model.generate``."""
    tiny.use_engine("hf")
    ref = tiny.generate(task_prompts, max_new_tokens=NEW, greedy=True)
    tiny.use_engine("torch")
    try:
        got = tiny.generate(task_prompts, max_new_tokens=NEW, greedy=True)
        engine = tiny._engine
    finally:
        tiny.use_engine("hf")
    assert [g.completion_ids for g in got] == [r.completion_ids for r in ref]
    assert engine.drafted > 0  # the drafts were really tried (a random model accepts few)
    for g, r in zip(got, ref):
        assert g.prompt_ids == r.prompt_ids and g.text == r.text and g.code == r.code
        assert g.logprobs == pytest.approx(r.logprobs, abs=1e-4)
        assert g.entropy == pytest.approx(r.entropy, abs=1e-4)
        torch.testing.assert_close(torch.tensor(g.prompt_state), torch.tensor(r.prompt_state), atol=1e-5, rtol=0)


def test_torch_engine_samples_carry_the_policy_logprobs(tiny, task_prompts):
    """PPO's denominator: a sampled reply's stored log-probs equal one batched recompute."""
    tiny.use_engine("torch")
    try:
        torch.manual_seed(11)
        first = tiny.generate(task_prompts, max_new_tokens=NEW)
        torch.manual_seed(11)
        again = tiny.generate(task_prompts, max_new_tokens=NEW)
    finally:
        tiny.use_engine("hf")
    assert [g.completion_ids for g in first] == [g.completion_ids for g in again]
    assert first[0].completion_ids != first[4].completion_ids  # same prompt, its own draw
    logprobs, entropy, _, _ = tiny.sequence_logprobs([g.prompt_ids for g in first], [g.completion_ids for g in first])
    for i, g in enumerate(first):
        n = len(g.completion_ids)
        assert 1 <= n <= NEW
        torch.testing.assert_close(logprobs[i, :n], torch.tensor(g.logprobs), atol=1e-4, rtol=0)
        torch.testing.assert_close(entropy[i, :n], torch.tensor(g.entropy), atol=1e-4, rtol=0)


def test_torch_engine_uses_the_frozen_prompt_cache_for_prompts_that_come_back(tmp_path, task_prompts):
    policy = Policy.load("tiny", device="cpu", cache_dir=str(tmp_path))
    ref = policy.generate(task_prompts, max_new_tokens=NEW, greedy=True)
    policy.train_top_layers(1, cache_mb=64)
    policy.use_engine("torch")
    for _ in range(2):  # filling the cache, then from it
        got = policy.generate(task_prompts, max_new_tokens=NEW, greedy=True, keep_prompts=True)
        assert [g.completion_ids for g in got] == [r.completion_ids for r in ref]
    assert policy.frozen_prefix.hits >= len({tuple(g.prompt_ids) for g in ref})


def test_engine_names_are_checked(tiny):
    assert set(ENGINES) == {"hf", "torch", "vllm"}
    with pytest.raises(ValueError, match="'fast'"):
        check_engine("fast")
    with pytest.raises(ValueError, match="'fast'"):
        tiny.use_engine("fast")
    assert tiny.engine == "hf"
