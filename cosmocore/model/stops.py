"""Where a reply is done: at end-of-sequence, or at the closing fence of its first code block.

The environment runs only the fenced code (``miniworld.extract``), yet an untrained model keeps
talking after it (explanations, a second copy): tokens that cost a decode step each and that
nothing reads. A reply is cut right after the token that completes the second ```` ``` ```` (the
closing fence after the opening one). Every engine uses this one rule, so their replies (and the
stored completion ids) are the same.

Hand-written rather than transformers' ``StopStringCriteria``: that one stops on any occurrence of
a string, and the first fence here must *not* stop a reply; the second must.
"""
from __future__ import annotations

from typing import Any

import torch
from transformers import StoppingCriteria

FENCE = "```"


class CodeBlockStop:
    """Incremental per-row detector: feed it tokens, it says when a row's code block closed."""

    def __init__(self, tokenizer: Any, rows: int) -> None:
        self._tokenizer = tokenizer
        self._pieces: dict[int, str] = {}
        self._tails = [""] * rows  # the last few characters of each row (a fence can span tokens)
        self._fences = [0] * rows

    def _piece(self, token: int) -> str:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._tokenizer.decode([token])
        return piece

    def push(self, row: int, token: int) -> bool:
        """Add ``token`` to ``row``; True when it completed the row's closing fence."""
        text = self._tails[row] + self._piece(token)
        # the tail is shorter than a fence, so every fence found here ends in the new piece
        found = text.count(FENCE)
        rest = text[text.rfind(FENCE) + len(FENCE):] if found else text
        self._tails[row] = rest[-(len(FENCE) - 1):]
        before = self._fences[row]
        self._fences[row] += found
        return before < 2 <= self._fences[row]


def stop_length(tokenizer: Any, ids: list[int], eos_ids: list[int]) -> int:
    """How many of ``ids`` a reply keeps: through the first EOS or the closing fence, else all."""
    stop = CodeBlockStop(tokenizer, 1)
    for i, token in enumerate(ids):
        if token in eos_ids or stop.push(0, token):
            return i + 1
    return len(ids)


class CodeBlockStoppingCriteria(StoppingCriteria):
    """The same rule for ``model.generate``: a row is finished once its code block closed."""

    def __init__(self, tokenizer: Any, rows: int, prompt_width: int) -> None:
        self._stop = CodeBlockStop(tokenizer, rows)
        self._seen = prompt_width
        self._done = torch.zeros(rows, dtype=torch.bool)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        for pos in range(self._seen, input_ids.shape[1]):
            for row, token in enumerate(input_ids[:, pos].tolist()):
                if not self._done[row] and self._stop.push(row, token):
                    self._done[row] = True
        self._seen = input_ids.shape[1]
        return self._done.to(input_ids.device).clone()
