"""What a rollout engine returns, and the registry of engines a policy can generate with.

An engine turns prompt token ids into replies for one ``Policy``: ``hf`` (transformers'
``generate``, the baseline), ``torch`` (this project's decode loop: shared-prefix prefill,
replies stopped at their code block, prompt-lookup drafts; see ``torch_engine``) and ``vllm``
(CUDA only, an optional extra). Whatever the engine, a ``Generation`` carries the behaviour
log-probs of the PyTorch policy (the PPO ratio's denominator): see docs/ENGINES.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

ENGINES = ("hf", "torch", "vllm")


class PolicyError(ValueError):
    """Bad input for the policy (unknown model, unusable device, an engine it cannot use): one
    line, naming the input. Here, beside the engines, so they raise it without importing the policy."""

FASTEST_CPU_ENGINE = "torch"


@dataclass
class Generation:
    """One sampled reply and what the behaviour policy knew when it sampled it."""

    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]
    entropy: list[float]
    text: str
    code: str
    # mean final hidden state over the prompt, from this reply's own prefill (generation's
    # numerics: no autocast), for the critic and the tagger; None when not captured
    prompt_state: list[float] | None = None


class Policy(Protocol):
    """What an engine reads from the policy it generates for (``cosmocore.model.policy.Policy``):
    named here, so engines depend on this interface and not on the policy module."""

    name: str
    model: Any
    tokenizer: Any
    device: Any
    temperature: float
    seed: int
    is_lora: bool
    frozen_prefix: Any
    eos_token_ids: list[int]

    def sequence_logprobs(self, *args: Any, **kwargs: Any) -> Any: ...


class Engine(Protocol):
    """Generates for a policy; ``sync`` is called after the policy's weights changed."""

    name: str

    def generate(self, policy: Policy, prompts: list[list[int]], max_new_tokens: int, greedy: bool,
                 keep_prompts: bool) -> list[Generation]: ...

    def sync(self, policy: Policy) -> None: ...


def check_engine(name: str) -> str:
    """``name`` if it is a known engine, else ValueError (one line naming it)."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r} (use {', '.join(ENGINES)})")
    return name
