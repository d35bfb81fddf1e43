"""What a rollout engine returns, and the registry of engines a policy can generate with.

An engine turns prompt token ids into replies for one ``Policy``: ``hf`` (transformers'
``generate``, the baseline), ``torch`` (this project's decode loop: shared-prefix prefill,
replies stopped at their code block, prompt-lookup drafts; see ``torch_engine``) and ``vllm``
(CUDA only, an optional extra). Whatever the engine, a ``Generation`` carries the behaviour
log-probs of the PyTorch policy (the PPO ratio's denominator): see docs/ENGINES.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cosmocore.model.policy import Policy

ENGINES = ("hf", "torch", "vllm")
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


def make_engine(name: str, policy: Policy) -> Engine:
    """The engine called ``name`` for ``policy`` (imports only what that engine needs)."""
    check_engine(name)
    if name == "hf":
        from cosmocore.model.hf_engine import HFEngine

        return HFEngine()
    if name == "torch":
        from cosmocore.model.torch_engine import TorchEngine

        return TorchEngine()
    from cosmocore.model.vllm_engine import VLLMEngine

    return VLLMEngine(policy)
