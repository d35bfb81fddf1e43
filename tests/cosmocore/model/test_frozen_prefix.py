"""The frozen lower blocks' cache: a forward from cached states equals the full forward (values,
entropy, pooled state, gradients, reference), sequences seen before cost no lower-block pass,
and the cache keeps to its memory budget. On the real ``tiny`` model (2 blocks: the top 1 trains)."""
from __future__ import annotations

import pytest
import torch

from cosmocore.model.frozen_prefix import FrozenPrefix
from cosmocore.model.policy import Policy

pytestmark = pytest.mark.slow  # starts Spark, a model or a subprocess

PROMPTS = [[1, 5, 9, 13, 17, 21, 25], [2, 4, 6], [7, 8, 9, 10, 11]]
COMPLETIONS = [[30, 31, 32], [40, 41, 42, 43, 44], [50]]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("models"))


def _pair(model_cache: str) -> tuple[Policy, Policy]:
    """The same seeded weights twice, top block trainable: one with the cache, one without."""
    cached, plain = (Policy.load("tiny", device="cpu", cache_dir=model_cache, seed=3) for _ in range(2))
    cached.train_top_layers(1, cache_mb=64)
    plain.train_top_layers(1)
    assert cached.frozen_prefix is not None and plain.frozen_prefix is None
    return cached, plain


def test_forward_from_cached_states_equals_the_full_forward(model_cache) -> None:
    cached, plain = _pair(model_cache)
    for policy in (cached, plain):
        policy.model.train()
    got = cached.sequence_logprobs(PROMPTS, COMPLETIONS)
    want = plain.sequence_logprobs(PROMPTS, COMPLETIONS)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert got[0].requires_grad and got[3].requires_grad
    for policy, out in ((cached, got), (plain, want)):
        (-(out[0].sum()) + out[3].pow(2).sum()).backward()
    grads = [(a.grad, b.grad) for a, b in zip(cached.model.parameters(), plain.model.parameters()) if a.requires_grad]
    assert grads and all(a is not None and a.abs().sum() > 0 for a, _ in grads)
    for a, b in grads:
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # the frozen reference shares the lower blocks' states and runs its own top block
    torch.testing.assert_close(cached.reference_logprobs(PROMPTS, COMPLETIONS),
                               plain.reference_logprobs(PROMPTS, COMPLETIONS), atol=1e-5, rtol=0)


def test_sequences_seen_before_skip_the_lower_blocks(model_cache) -> None:
    cached, _ = _pair(model_cache)
    cache = cached.frozen_prefix
    cached.sequence_logprobs(PROMPTS, COMPLETIONS)
    assert (cache.misses, cache.hits) == (3, 0)
    cached.reference_logprobs(PROMPTS[::-1], COMPLETIONS[::-1])  # other batch order, other padding
    assert (cache.misses, cache.hits) == (3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # other numerics: kept apart
        cached.sequence_logprobs(PROMPTS[:1], COMPLETIONS[:1])
    assert (cache.misses, cache.hits) == (4, 3)


def test_prompt_states_are_the_pooled_state_of_the_full_sequence(model_cache) -> None:
    cached, plain = _pair(model_cache)
    pooled = plain.sequence_logprobs(PROMPTS, COMPLETIONS)[3]
    for policy in (cached, plain):
        states = policy.prompt_states(PROMPTS)
        assert states.shape == (3, policy.hidden_size) and not states.requires_grad
        torch.testing.assert_close(states, pooled, atol=1e-5, rtol=0)


def test_the_cache_keeps_to_its_budget_least_recently_used_first(model_cache) -> None:
    cached, _ = _pair(model_cache)
    net, hidden = cached.model, cached.hidden_size
    one_row = 8 * hidden * 4  # an 8-token sequence's float32 states
    cache = FrozenPrefix(split=1, budget_mb=2.5 * one_row / 2**20)  # room for two
    rows = [torch.arange(8) + 100 * i for i in range(3)]
    for row in rows:
        cache._lower(net, row)
    cache._lower(net, rows[1])  # a hit: row 1 becomes the most recent
    assert (cache.misses, cache.hits) == (3, 1) and cache._bytes <= cache.budget
    cache._lower(net, rows[0])  # evicted when row 2 came in
    cache._lower(net, rows[1])
    assert (cache.misses, cache.hits) == (4, 2)
    big = cache._lower(net, torch.arange(64))  # over budget alone: computed, not kept
    assert big.shape == (64, hidden) and cache._bytes <= cache.budget
    cache.clear()
    assert cache._bytes == 0


def test_no_cache_without_frozen_blocks_or_under_lora(model_cache) -> None:
    policy = Policy.load("tiny", device="cpu", cache_dir=model_cache)
    policy.train_top_layers(2, cache_mb=64)  # k >= n_layers: nothing frozen
    assert policy.frozen_prefix is None
    lora = Policy.load("tiny", device="cpu", cache_dir=model_cache, lora=True)
    lora.train_top_layers(1, cache_mb=64)
    assert lora.frozen_prefix is None
    with pytest.raises(ValueError, match="contiguous"):
        cached, _ = _pair(model_cache)
        ids = torch.tensor([[5, 6, 7, 8]])
        cached.frozen_prefix.hidden(cached.model, ids, torch.tensor([[1, 0, 1, 1]]), torch.tensor([[0, 0, 1, 2]]))


CHATS = [
    [{"role": "user", "content": "Fix the join."}],
    [{"role": "system", "content": "You repair PySpark pipelines."},
     {"role": "user", "content": "The aggregation double counts orders after the left join; fix transform(df)."}],
]


def test_generation_from_cached_prompt_keys_and_values_equals_plain_generation(model_cache) -> None:
    cached, plain = _pair(model_cache)
    for greedy in (True, True, False):  # the first call keeps the prompts' keys and values, later ones read them
        outs = []
        for policy in (cached, plain):
            torch.manual_seed(7)
            outs.append(policy.generate(CHATS, max_new_tokens=8, greedy=greedy, keep_prompts=True))
        for a, b in zip(*outs):
            assert a.completion_ids == b.completion_ids
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
    assert cached.frozen_prefix.misses == 2 and cached.frozen_prefix.hits == 4
    cached.generate(CHATS[:1], max_new_tokens=2)  # prompts not said to come back: run as usual, nothing kept
    assert cached.frozen_prefix.misses == 2 and cached.frozen_prefix.hits == 4
