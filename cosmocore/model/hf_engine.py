"""The ``hf`` engine: transformers' ``generate`` on the policy's own model (the baseline).

Log-probs and entropy come from the raw logits ``generate`` saw at each step, scaled by the
policy's temperature even when greedy, so they match ``Policy.sequence_logprobs``. Each reply is
cut at EOS or at the closing fence of its code block (``stops``); ``generate`` stops a row there
and the batch once every row is done.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from transformers import GenerationConfig, StoppingCriteriaList
from trl.trainer.utils import entropy_from_logits, selective_log_softmax

from cosmocore.model.batching import left_pad, masked_mean, positions
from cosmocore.model.generation import Generation, Policy
from cosmocore.model.stops import CodeBlockStoppingCriteria, stop_length
from miniworld.extract import extract_code



def generation_config(policy: Policy, max_new_tokens: int, greedy: bool) -> GenerationConfig:
    """Exactly ``softmax(logits / T)`` when sampling: transformers applies top-k 50 unless
    told otherwise, which would make the stored log-probs lie about the sampler."""
    common: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens,
        eos_token_id=policy.eos_token_ids,
        pad_token_id=policy.tokenizer.pad_token_id,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        num_beams=1,
        use_cache=True,
        return_dict_in_generate=True,
        output_logits=True,
    )
    if greedy:
        return GenerationConfig(do_sample=False, **common)
    return GenerationConfig(
        do_sample=True, temperature=policy.temperature, top_k=0, top_p=1.0, min_p=None, typical_p=1.0, **common
    )


@contextlib.contextmanager
def prefill_states(model: torch.nn.Module, attention_mask: torch.Tensor) -> Iterator[list[torch.Tensor]]:
    """While ``generate`` runs: each prompt's mean final hidden state ``[B,H]`` (float32),
    pooled from the final norm's first output (the prefill over the whole prompt batch), so
    the prompt states need no second pass over the prompts. Empty if the decoder has no final
    ``norm`` or its first output was not the whole batch (e.g. a chunked prefill).
    Hand-written: ``generate(output_hidden_states=True)`` would keep every layer of every step."""
    kept: list[torch.Tensor] = []
    calls = 0
    norm = getattr(model.get_decoder(), "norm", None)

    def first_call(_module: torch.nn.Module, _args: tuple, output: torch.Tensor) -> None:
        nonlocal calls
        calls += 1
        if calls == 1 and output.shape[:2] == attention_mask.shape:
            kept.append(masked_mean(output, attention_mask))

    handle = norm.register_forward_hook(first_call) if isinstance(norm, torch.nn.Module) else None
    try:
        yield kept
    finally:
        if handle is not None:
            handle.remove()


class HFEngine:
    """``model.generate`` with left padding, one batch, stopped per row at its code block."""

    name = "hf"

    def sync(self, policy: Policy) -> None:
        """Nothing to do: this engine runs the policy's own module."""

    def generate(self, policy: Policy, prompts: list[list[int]], max_new_tokens: int, greedy: bool,
                 keep_prompts: bool) -> list[Generation]:
        """``keep_prompts``: these prompts come back (an eval split), so with a frozen blocks'
        cache their lower keys and values are kept and reused: the prefill runs the top blocks."""
        model, frozen = policy.model, policy.frozen_prefix
        input_ids, attention_mask = left_pad(prompts, policy.tokenizer.pad_token_id, policy.device)
        stop = CodeBlockStoppingCriteria(policy.tokenizer, len(prompts), input_ids.shape[1])
        with torch.no_grad():
            past = None  # prompts that come back: their keys and values from the frozen blocks' cache
            if keep_prompts and frozen is not None and min(len(p) for p in prompts) >= 2:
                past = frozen.prompt_cache(model, input_ids, attention_mask, positions(attention_mask))
            with prefill_states(model, attention_mask) if past is None else contextlib.nullcontext([]) as prefill:
                out = model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    past_key_values=past,
                    generation_config=generation_config(policy, max_new_tokens, greedy),
                    stopping_criteria=StoppingCriteriaList([stop]),
                )
        states = prefill[0].cpu().tolist() if prefill else [None] * len(prompts)
        new_tokens = out.sequences[:, input_ids.shape[1]:]
        steps = len(out.logits)
        logprobs = torch.zeros((len(prompts), steps))
        entropy = torch.zeros((len(prompts), steps))
        for t, step_logits in enumerate(out.logits):
            scaled = step_logits.float() / policy.temperature
            logprobs[:, t] = selective_log_softmax(scaled, new_tokens[:, t]).cpu()
            entropy[:, t] = entropy_from_logits(scaled).cpu()
        results = []
        for i, prompt in enumerate(prompts):
            row = new_tokens[i, :steps].tolist()
            length = stop_length(policy.tokenizer, row, policy.eos_token_ids)
            ids = row[:length]
            text = policy.tokenizer.decode(ids, skip_special_tokens=True)
            results.append(Generation(prompt_ids=prompt, completion_ids=ids, logprobs=logprobs[i, :length].tolist(),
                                      entropy=entropy[i, :length].tolist(), text=text, code=extract_code(text),
                                      prompt_state=states[i]))
        return results
