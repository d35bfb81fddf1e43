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

Generation gets the same saving on prompts its caller says come back (the eval split's, every
cycle): their lower blocks' keys and values are kept per prompt too, so their prefill runs only
the top blocks.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Iterator

import torch
from transformers import DynamicCache

# Model types whose inner forward takes ``inputs_embeds`` as the first block's input unchanged
# (Gemma, for one, rescales them), checked against transformers' Llama code.
SUPPORTED_TYPES = ("llama",)


def supports(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a plain (non-PEFT) causal LM this module knows how to split."""
    inner = getattr(model, "model", None)
    return (getattr(getattr(model, "config", None), "model_type", None) in SUPPORTED_TYPES
            and hasattr(inner, "layers") and hasattr(inner, "norm") and hasattr(model, "lm_head"))


def _numerics(ids: torch.Tensor) -> tuple:
    """What else the states depend on: the device and the autocast setting (bf16/fp16 matmuls)."""
    kind = ids.device.type
    return str(ids.device), torch.is_autocast_enabled(kind) and str(torch.get_autocast_dtype(kind))


@contextlib.contextmanager
def _window(inner: torch.nn.Module, layers: slice, final_norm: bool) -> Iterator[None]:
    """``inner`` (the transformer under the LM head) with only ``layers``, and its final norm only
    if ``final_norm``: its own forward then does the masks and rotary embeddings as it always does."""
    # never ask for output_hidden_states/attentions inside a window: transformers installs its
    # capture hooks once, on the layers present at the first such call
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
        self._states: OrderedDict[tuple, tuple[object, int]] = OrderedDict()  # key -> (value, bytes)
        self._bytes = 0
        self.hits = self.misses = 0

    def clear(self) -> None:
        """Forget every state (call when the frozen weights are overwritten)."""
        self._states.clear()
        self._bytes = 0

    def _cached(self, key: tuple) -> object | None:
        hit = self._states.get(key)
        if hit is not None:
            self.hits += 1
            self._states.move_to_end(key)
        else:
            self.misses += 1
        return hit

    def _remember(self, key: tuple, value: object, tensors: list[torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in tensors)
        if size > self.budget:
            return
        self._states[key] = (value, size)
        self._bytes += size
        while self._bytes > self.budget:
            _, (_, old) = self._states.popitem(last=False)
            self._bytes -= old

    def _lower(self, net: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
        """Blocks ``[0, split)`` of one unpadded sequence ``[L]``, as ``[L, H]`` (cached)."""
        key = ("states", *_numerics(ids), tuple(ids.tolist()))
        hit = self._cached(key)
        if hit is not None:
            return hit[0]
        with torch.no_grad(), _window(net.model, slice(0, self.split), final_norm=False):
            state = net.model(input_ids=ids.unsqueeze(0), use_cache=False).last_hidden_state[0]
        self._remember(key, state, [state])
        return state

    def _lower_kv(self, net: torch.nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Blocks ``[0, split)`` of one unpadded prompt: its output ``[L, H]`` and each block's
        keys and values ``[kv_heads, L, head_dim]`` (cached): what a prefill computes there."""
        key = ("kv", *_numerics(ids), tuple(ids.tolist()))
        hit = self._cached(key)
        if hit is not None:
            return hit[0]
        cache = DynamicCache(config=net.config)
        with torch.no_grad(), _window(net.model, slice(0, self.split), final_norm=False):
            state = net.model(input_ids=ids.unsqueeze(0), past_key_values=cache, use_cache=True).last_hidden_state[0]
        kv = [(cache.layers[j].keys[0], cache.layers[j].values[0]) for j in range(self.split)]
        self._remember(key, (state, kv), [state] + [t for pair in kv for t in pair])
        return state, kv

    def prompt_cache(self, net: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     position_ids: torch.Tensor) -> DynamicCache:
        """Every block's keys and values for all but the last position of a left-padded prompt
        batch, as ``generate``'s prefill would leave them: the lower blocks' from the cache (per
        prompt), the top blocks' from one pass over the cached lower output. ``generate`` given
        this cache runs the last prompt position and decodes on."""
        head, mask, positions = input_ids[:, :-1], attention_mask[:, :-1], position_ids[:, :-1]
        batch, width = head.shape
        rows = []
        for i in range(batch):
            real = mask[i].nonzero().flatten()
            if len(real):
                start = int(real[0])
                if width - start != len(real):
                    raise ValueError("FrozenPrefix.prompt_cache needs left-padded prompts")
                rows.append((i, start, self._lower_kv(net, head[i, start:])))
        if len(rows) != batch:
            raise ValueError("FrozenPrefix.prompt_cache needs prompts of 2 tokens or more")
        state0, kv0 = rows[0][2]
        lower = state0.new_zeros((batch, width, state0.shape[-1]))
        kvs = [tuple(t.new_zeros((batch, t.shape[0], width, t.shape[-1])) for t in pair) for pair in kv0]
        for i, start, (state, kv) in rows:
            lower[i, start:] = state
            for (keys, values), (k, v) in zip(kvs, kv):
                keys[i, :, start:] = k
                values[i, :, start:] = v
        cache = DynamicCache(config=net.config)
        # the top blocks first: the mask is sized from block 0's cache, which must still be empty
        with torch.no_grad(), _window(net.model, slice(self.split, None), final_norm=True):
            net.model(inputs_embeds=lower, attention_mask=mask, position_ids=positions, past_key_values=cache,
                      use_cache=True)
        for j, (keys, values) in enumerate(kvs):
            cache.update(keys, values, j)
        return cache

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
            rows.append((i, start, self._lower(net, input_ids[i, start:end])))
        width = net.config.hidden_size
        dtype = rows[0][2].dtype if rows else net.model.embed_tokens.weight.dtype
        lower = torch.zeros((*input_ids.shape, width), dtype=dtype, device=input_ids.device)
        for i, start, state in rows:
            lower[i, start:start + len(state)] = state
        with _window(net.model, slice(self.split, None), final_norm=True):
            out = net.model(inputs_embeds=lower, attention_mask=attention_mask, position_ids=position_ids,
                            use_cache=False)
        return out.last_hidden_state
