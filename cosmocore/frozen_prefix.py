"""Run only the trainable top of a partly frozen causal LM, from cached lower-block states.

``Policy.train_top_layers(k)`` freezes the embeddings and every block below the top k, so what
those lower blocks output is a fixed function of the token ids. The warm start, the night's
policy pass, the frozen reference's KL pass, the corrective term and the critic's prompt states
push the same few sequences (a replayed failure, its reference fix, the rehearsal pairs, the
suite's prompts) through the lower blocks again and again. This keeps the lower blocks' output
per token sequence and runs only the top blocks. Hand-written: transformers caches keys and
values for generation, but nothing resumes a forward from a block's hidden states.

Each sequence's lower states are computed on their own (batch 1, no padding), so what the top
blocks see does not depend on the batch a sequence came in or on what the cache held: a resumed
run computes the numbers an uninterrupted one does.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Iterator

import torch

# Model types whose inner forward takes ``inputs_embeds`` as the first block's input unchanged
# (Gemma, for one, rescales them), checked against transformers' Llama code.
SUPPORTED_TYPES = ("llama",)


def supports(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a plain (non-PEFT) causal LM this module knows how to split."""
    inner = getattr(model, "model", None)
    return (getattr(getattr(model, "config", None), "model_type", None) in SUPPORTED_TYPES
            and hasattr(inner, "layers") and hasattr(inner, "norm") and hasattr(model, "lm_head"))


@contextlib.contextmanager
def _window(inner: torch.nn.Module, layers: slice, final_norm: bool) -> Iterator[None]:
    """``inner`` (the transformer under the LM head) with only ``layers``, and its final norm only
    if ``final_norm``: its own forward then does the masks and rotary embeddings as it always does."""
    all_layers, norm = inner.layers, inner.norm
    inner.layers = torch.nn.ModuleList(list(all_layers)[layers])
    if not final_norm:
        inner.norm = torch.nn.Identity()
    try:
        yield
    finally:
        inner.layers, inner.norm = all_layers, norm


class FrozenPrefix:
    """The output of blocks ``[0, split)`` per token sequence (an LRU under ``budget_mb``), and
    the forward of blocks ``[split, n)`` plus the final norm on top of it."""

    def __init__(self, split: int, budget_mb: float) -> None:
        if split < 1:
            raise ValueError(f"split must be >= 1, got {split}")
        self.split = split
        self.budget = int(budget_mb * 2**20)
        self._states: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    def clear(self) -> None:
        """Forget every state (call when the frozen weights are overwritten)."""
        self._states.clear()
        self._bytes = 0

    def _lower(self, net: torch.nn.Module, ids: torch.Tensor, device_type: str) -> torch.Tensor:
        """Blocks ``[0, split)`` of one unpadded sequence ``[L]``, as ``[L, H]`` (cached)."""
        # the states differ with autocast (bf16 matmuls), so its setting is part of the key
        key = (torch.is_autocast_enabled(device_type), tuple(ids.tolist()))
        hit = self._states.get(key)
        if hit is not None:
            self.hits += 1
            self._states.move_to_end(key)
            return hit
        self.misses += 1
        with torch.no_grad(), _window(net.model, slice(0, self.split), final_norm=False):
            state = net.model(input_ids=ids.unsqueeze(0), use_cache=False).last_hidden_state[0]
        size = state.numel() * state.element_size()
        if size <= self.budget:
            self._states[key] = state
            self._bytes += size
            while self._bytes > self.budget:
                _, old = self._states.popitem(last=False)
                self._bytes -= old.numel() * old.element_size()
        return state

    def hidden(self, net: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               position_ids: torch.Tensor) -> torch.Tensor:
        """The final (normed) hidden states ``[B, W, H]`` of a batch whose real tokens are one
        contiguous run per row (left-padded prompt + right-padded completion). Gradients reach
        the top blocks when ``net`` is in train mode and the caller allows them; padded positions
        enter the top blocks as zeros (the attention mask keeps them out of every real one)."""
        rows: list[tuple[int, int, torch.Tensor]] = []
        for i in range(input_ids.shape[0]):
            real = attention_mask[i].nonzero().flatten()
            if len(real) == 0:
                continue
            start, end = int(real[0]), int(real[-1]) + 1
            if end - start != len(real):
                raise ValueError("FrozenPrefix needs each row's tokens in one contiguous run")
            rows.append((i, start, self._lower(net, input_ids[i, start:end], input_ids.device.type)))
        width = net.config.hidden_size
        dtype = rows[0][2].dtype if rows else torch.float32
        lower = torch.zeros((*input_ids.shape, width), dtype=dtype, device=input_ids.device)
        for i, start, state in rows:
            lower[i, start:start + len(state)] = state
        with _window(net.model, slice(self.split, None), final_norm=True):
            out = net.model(inputs_embeds=lower, attention_mask=attention_mask, position_ids=position_ids,
                            use_cache=False)
        return out.last_hidden_state
