"""The engines by name: the one place that knows every engine module (see ``generation``)."""
from __future__ import annotations

from cosmocore.model.generation import Engine, Policy, check_engine
from cosmocore.model.hf_engine import HFEngine
from cosmocore.model.torch_engine import TorchEngine
from cosmocore.model.vllm_engine import VLLMEngine


def make_engine(name: str, policy: Policy) -> Engine:
    """The engine called ``name`` for ``policy`` (vllm itself is imported only by its engine)."""
    check_engine(name)
    if name == "hf":
        return HFEngine()
    if name == "torch":
        return TorchEngine()
    return VLLMEngine(policy)
