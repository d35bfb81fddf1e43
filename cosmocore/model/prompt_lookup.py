"""Prompt-lookup drafts: guess a reply's next tokens by copying what followed the same n-gram
earlier in the prompt or the reply (Saxena 2023, "prompt lookup decoding").

A repair reply restates much of the buggy code it was shown, so these guesses are often right;
``torch_engine`` checks them all in one forward and keeps only those equal to the token the model
picks itself (greedy or sampled), so the reply is the one plain decoding would give.
Hand-written: transformers' ``prompt_lookup_num_tokens`` runs only at batch size 1.
"""
from __future__ import annotations

import torch


def draft(tokens: torch.Tensor, length: int, ngram_sizes: tuple[int, ...] = (3, 2)) -> list[int]:
    """Up to ``length`` tokens that followed the first earlier occurrence of ``tokens``' last
    n-gram (longest n first); ``[]`` when none occurs (or ``length < 1``). ``tokens``: 1-D, CPU."""
    size = tokens.shape[0]
    if length < 1:
        return []
    for n in ngram_sizes:
        if size <= n:
            continue
        windows = tokens[:-1].unfold(0, n, 1)  # every n-gram that ends before the last token
        hits = (windows == tokens[-n:]).all(1).nonzero()
        if len(hits):
            start = int(hits[0]) + n
            return tokens[start:start + length].tolist()
    return []
