"""The policy model: seeded tiny weights, generation that reports honest behaviour log-probs
(the denominator of the PPO ratio), recompute, reference model, persistence, errors.

All on the real ``tiny`` model; one test converts and runs the real SmolLM2-135M."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from cosmocore.model.hf_engine import generation_config
from cosmocore.model.policy import Generation, Policy, PolicyError
from miniworld.extract import extract_code

pytestmark = pytest.mark.slow  # starts Spark, a model or a subprocess

PROMPTS = [
    [{"role": "user", "content": "Fix the join."}],
    [
        {"role": "system", "content": "You repair PySpark pipelines."},
        {"role": "user", "content": "The aggregation double counts orders after the left join; fix transform(df)."},
    ],
    [{"role": "user", "content": "Drop rows whose id is null, then count per key."}],
]
NEW = 10


def _load(name: str, model_cache: str, **kwargs) -> Policy:
    """The exactness checks pin fp32 on the CPU; CUDA (bf16) has its own test below."""
    return Policy.load(name, device=kwargs.pop("device", "cpu"), cache_dir=model_cache, **kwargs)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def tiny(model_cache) -> Policy:
    """A shared, read-only policy: tests that train or modify load their own."""
    return _load("tiny", model_cache)


def _state(policy: Policy) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in policy.model.state_dict().items()}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _recompute(policy: Policy, gens: list[Generation], model=None):
    return policy.sequence_logprobs([g.prompt_ids for g in gens], [g.completion_ids for g in gens], model=model)


def test_tiny_weights_are_seeded_and_leave_the_global_rng_alone(tiny, model_cache):
    rng = torch.get_rng_state()
    again = _load("tiny", model_cache, seed=0)
    other = _load("tiny", model_cache, seed=1)
    assert torch.equal(rng, torch.get_rng_state())
    assert _same_state(_state(tiny), _state(again))
    assert not _same_state(_state(tiny), _state(other))
    assert tiny.device == torch.device("cpu") and tiny.model.dtype == torch.float32
    assert tiny.hidden_size == 64 and 1_000_000 < tiny.num_parameters() < 10_000_000
    assert not tiny.is_lora  # lora=None: off below ~1B parameters
    assert tiny.tokenizer.padding_side == "left" and tiny.tokenizer.pad_token_id is not None


def test_generate_shapes_and_seeded_sampling(tiny):
    torch.manual_seed(7)
    first = tiny.generate(PROMPTS, max_new_tokens=NEW)
    torch.manual_seed(7)
    second = tiny.generate(PROMPTS, max_new_tokens=NEW)
    assert [g.completion_ids for g in first] == [g.completion_ids for g in second]
    assert [g.logprobs for g in first] == [g.logprobs for g in second]
    for messages, g in zip(PROMPTS, first):
        assert g.prompt_ids == tiny.encode_chat(messages)
        assert 1 <= len(g.completion_ids) <= NEW
        assert len(g.logprobs) == len(g.entropy) == len(g.completion_ids)
        assert all(lp <= 0 for lp in g.logprobs) and all(e >= 0 for e in g.entropy)
        assert g.text == tiny.tokenizer.decode(g.completion_ids, skip_special_tokens=True)
        assert g.code == extract_code(g.text)
    assert tiny.generate([], max_new_tokens=NEW) == []


def test_generation_carries_the_prompt_state_of_its_own_prefill(tiny):
    """The critic's view of a prompt comes from the reply's own prefill: the same pooled state
    ``prompt_states`` computes in a pass of its own (fp32), one per reply, whatever the padding."""
    gens = tiny.generate(PROMPTS, max_new_tokens=NEW)
    again = tiny.prompt_states([g.prompt_ids for g in gens])
    captured = torch.tensor([g.prompt_state for g in gens])
    assert captured.shape == again.shape == (len(PROMPTS), tiny.hidden_size)
    assert torch.allclose(captured, again, atol=1e-5), (captured - again).abs().max()
    assert not torch.allclose(captured[0], captured[1])  # each row its own prompt, not the batch's


def test_greedy_is_deterministic_and_stops_at_eos(tiny):
    a = tiny.generate(PROMPTS, max_new_tokens=NEW, greedy=True)
    b = tiny.generate(PROMPTS, max_new_tokens=NEW, greedy=True)
    assert [g.completion_ids for g in a] == [g.completion_ids for g in b]
    # Pretend the third greedy token of the first reply is EOS: that reply must end right there,
    # EOS included, while the others run on until they meet it (or hit the budget).
    ids = a[0].completion_ids
    stop = ids[2]
    cut = ids.index(stop) + 1
    saved = tiny.eos_token_ids
    try:
        tiny.eos_token_ids = [stop]
        c = tiny.generate(PROMPTS, max_new_tokens=NEW, greedy=True)
    finally:
        tiny.eos_token_ids = saved
    assert c[0].completion_ids == ids[:cut]
    assert c[0].logprobs == pytest.approx(a[0].logprobs[:cut], abs=1e-5)
    for g, ref in zip(c[1:], a[1:]):
        full = ref.completion_ids
        assert g.completion_ids == (full[: full.index(stop) + 1] if stop in full else full)


def test_sampler_is_exactly_softmax_over_temperature(tiny):
    """No hidden warper (transformers defaults to top-k 50): the processed scores the sampler
    draws from must equal logits / T, or stored log-probs would misdescribe the behaviour."""
    ids = torch.tensor([tiny.encode_chat(PROMPTS[0])])
    config = generation_config(tiny, 4, greedy=False)
    config.output_scores = True
    with torch.no_grad():
        out = tiny.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
    for scores, logits in zip(out.scores, out.logits):
        torch.testing.assert_close(scores.log_softmax(-1), (logits / tiny.temperature).log_softmax(-1))


@pytest.mark.parametrize("greedy", [False, True])
def test_behaviour_logprobs_equal_the_recompute(tiny, greedy):
    """The PPO invariant: at init the importance ratio against stored log-probs is 1."""
    torch.manual_seed(3)
    gens = tiny.generate(PROMPTS, max_new_tokens=NEW, greedy=greedy)
    logprobs, entropy, mask, pooled = _recompute(tiny, gens)
    width = max(len(g.completion_ids) for g in gens)
    assert logprobs.shape == entropy.shape == mask.shape == (len(gens), width)
    assert pooled.shape == (len(gens), tiny.hidden_size)
    assert not logprobs.requires_grad  # eval mode: no graph
    for i, g in enumerate(gens):
        n = len(g.completion_ids)
        assert mask[i].sum().item() == n
        torch.testing.assert_close(logprobs[i, :n], torch.tensor(g.logprobs), atol=1e-4, rtol=0)
        torch.testing.assert_close(entropy[i, :n], torch.tensor(g.entropy), atol=1e-4, rtol=0)
        assert torch.all(logprobs[i, n:] == 0) and torch.all(entropy[i, n:] == 0)
    # The prompt pooling is the same feature pooled_hidden computes from the prompt alone.
    text = tiny.tokenizer.decode(gens[0].prompt_ids)
    if tiny.tokenizer(text, add_special_tokens=False)["input_ids"] == gens[0].prompt_ids:  # round-trips
        torch.testing.assert_close(tiny.pooled_hidden([text])[0], pooled[0], atol=1e-5, rtol=0)


def test_batched_greedy_equals_one_at_a_time(tiny):
    batched = tiny.generate(PROMPTS, max_new_tokens=NEW, greedy=True)
    assert len({len(g.prompt_ids) for g in batched}) == len(PROMPTS)  # left padding really used
    for messages, b in zip(PROMPTS, batched):
        (single,) = tiny.generate([messages], max_new_tokens=NEW, greedy=True)
        assert single.completion_ids == b.completion_ids
        assert single.logprobs == pytest.approx(b.logprobs, abs=1e-4)
        assert single.entropy == pytest.approx(b.entropy, abs=1e-4)


def test_pooled_hidden_is_per_text_and_padding_free(tiny):
    texts = ["def transform(df):\n    return df\n", "x", ""]
    together = tiny.pooled_hidden(texts)
    assert together.shape == (3, tiny.hidden_size) and not together.requires_grad
    for i, text in enumerate(texts[:2]):
        torch.testing.assert_close(tiny.pooled_hidden([text])[0], together[i], atol=1e-5, rtol=0)
    assert torch.all(together[2] == 0) and torch.isfinite(together).all()


@pytest.mark.parametrize("lora", [False, True])
def test_gradients_flow_and_the_reference_stays_put(model_cache, lora):
    policy = _load("tiny", model_cache, lora=lora)
    assert policy.is_lora == lora
    if lora:
        assert 0 < policy.num_parameters(trainable_only=True) < policy.num_parameters() / 10
    torch.manual_seed(0)
    gens = policy.generate(PROMPTS[:2], max_new_tokens=6)
    prompts, completions = [g.prompt_ids for g in gens], [g.completion_ids for g in gens]
    reference = policy.reference_model()
    ref_before = policy.sequence_logprobs(prompts, completions, model=reference)[0]
    assert not ref_before.requires_grad

    policy.model.train()
    logprobs, _, mask, pooled = policy.sequence_logprobs(prompts, completions)
    assert logprobs.requires_grad and pooled.requires_grad
    torch.testing.assert_close(logprobs, ref_before, atol=1e-4, rtol=0)  # ratio 1 at init, LoRA included
    trainable = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    (-(logprobs * mask).sum() / mask.sum()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    optimizer.step()

    after = policy.sequence_logprobs(prompts, completions)[0]
    assert (after - logprobs).abs().max() > 1e-3  # the policy moved
    torch.testing.assert_close(policy.reference_logprobs(prompts, completions), ref_before, atol=1e-6, rtol=0)
    assert all(not p.requires_grad for p in reference.parameters())
    assert policy.model.training  # the reference forward left the policy's mode alone


def test_checkpoint_round_trip_keeps_the_initial_reference(model_cache):
    policy = _load("tiny", model_cache)
    prompts, completions = [policy.encode_chat(PROMPTS[0])], [[10, 20, 30]]
    initial = policy.sequence_logprobs(prompts, completions)[0]
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    trained = policy.sequence_logprobs(prompts, completions)[0]
    state = policy.state_dict_for_checkpoint()

    resumed = _load("tiny", model_cache)  # a fresh process resuming the run
    resumed.load_state_dict_from_checkpoint(state)
    torch.testing.assert_close(resumed.sequence_logprobs(prompts, completions)[0], trained)
    torch.testing.assert_close(resumed.reference_logprobs(prompts, completions), initial)
    with pytest.raises(PolicyError):
        resumed.load_state_dict_from_checkpoint({**state, "lora": True})


@pytest.mark.parametrize("lora", [False, True])
def test_save_and_load_round_trip(model_cache, tmp_path, lora):
    policy = _load("tiny", model_cache, lora=lora, seed=5)
    with torch.no_grad():  # make the adapter non-trivial so the round trip proves something
        for name, p in policy.model.named_parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    folder = tmp_path / "saved"
    policy.save(str(folder))
    assert any(f.suffix == ".safetensors" for f in folder.iterdir())
    assert (folder / "adapter_config.json").is_file() == lora
    loaded = _load(str(folder), model_cache)
    assert loaded.is_lora == lora
    prompts, completions = [policy.encode_chat(PROMPTS[1])], [[5, 6, 7, 8]]
    torch.testing.assert_close(
        loaded.sequence_logprobs(prompts, completions)[0], policy.sequence_logprobs(prompts, completions)[0]
    )
    assert loaded.tokenizer.chat_template == policy.tokenizer.chat_template


def test_bad_input_is_one_line_naming_it(model_cache, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cases = {
        "no-such-org/no-such-model-xyz": {"name": "no-such-org/no-such-model-xyz"},
        str(tmp_path / "missing"): {"name": str(tmp_path / "missing")},
        "banana": {"name": "tiny", "device": "banana"},
        "0": {"name": "tiny", "temperature": 0.0},
    }
    if not torch.cuda.is_available():
        cases["cuda"] = {"name": "tiny", "device": "cuda"}
    for named, kwargs in cases.items():
        start = time.monotonic()
        with pytest.raises(PolicyError) as info:
            Policy.load(cache_dir=model_cache, **kwargs)
        message = str(info.value)
        assert named in message and "\n" not in message, message
        assert time.monotonic() - start < 10, kwargs
    assert issubclass(PolicyError, ValueError)


# The one real-model test. It is deliberately not marked slow or skipped: CI runs it too. The
# first run converts the GGUF (~20 s on 2 cores) into a private cache dir.
@pytest.mark.timeout(300)
def test_smollm2_converts_once_and_answers_greedily(model_cache):
    policy = _load("smollm2-135m", model_cache)
    folder = Path(model_cache) / "smollm2-135m"
    assert any(f.suffix == ".safetensors" for f in folder.iterdir())
    assert not [p for p in Path(model_cache).iterdir() if p.name.startswith(".")]  # no temp dirs left
    assert 130_000_000 < policy.num_parameters() < 140_000_000 and policy.hidden_size == 576
    assert not policy.is_lora
    messages = [[{"role": "user", "content": "Write a Python function that adds two numbers."}]]
    (gen,) = policy.generate(messages, max_new_tokens=8, greedy=True)
    assert len(gen.completion_ids) == len(gen.logprobs) == 8 or gen.completion_ids[-1] in policy.eos_token_ids
    assert gen.text.strip()  # a real model says something
    logprobs = _recompute(policy, [gen])[0][0, : len(gen.completion_ids)]
    torch.testing.assert_close(logprobs, torch.tensor(gen.logprobs), atol=1e-4, rtol=0)
    start = time.monotonic()
    _load("smollm2-135m", model_cache)  # now from the safetensors cache
    assert time.monotonic() - start < 15


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_is_picked_with_bf16(model_cache):
    policy = Policy.load("tiny", cache_dir=model_cache)  # device=None: CUDA when present
    assert policy.device.type == "cuda" and policy.model.dtype == torch.bfloat16
    torch.manual_seed(0)
    gens = policy.generate(PROMPTS, max_new_tokens=NEW)
    logprobs, entropy, mask, pooled = _recompute(policy, gens)
    assert logprobs.dtype == torch.float32 and torch.isfinite(pooled).all()
    stored = torch.zeros_like(logprobs)
    for i, g in enumerate(gens):
        stored[i, : len(g.logprobs)] = torch.tensor(g.logprobs)
    # bf16 cached decoding and a full forward round differently; the ratio is only ~1 here.
    assert ((logprobs - stored).abs() * mask).sum() / mask.sum() < 0.1
