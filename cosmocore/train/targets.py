"""The supervised targets the warm start and the night's corrective term train on: each train
task's reference completion (its code in a block, then EOS), the fix tokens in it, and the
weighted NLL of those completions after their prompts. Memoised per task: the warm start and
every night ask again."""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import torch

from cosmocore.train.losses import fix_mask, weighted_nll
from miniworld.task import Task

log = logging.getLogger(__name__)
# The automatic reply budget: the longest reference reply of the scored tasks plus this share, so a
# correct answer written a little differently from the reference still fits.
BUDGET_MARGIN = 0.10

if TYPE_CHECKING:  # the policy module loads transformers: only a trainer that has a policy needs it
    from cosmocore.model.policy import Policy


class Targets:
    """Reference completions and fix masks of one policy's tokenizer."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._ref_ids: dict[str, list[int]] = {}
        self._fix_masks: dict[str, list[int]] = {}

    def _completion(self, code: str) -> list[int]:
        return self.policy.tokenizer(f"```python\n{code}```", add_special_tokens=False)["input_ids"] + \
            self.policy.eos_token_ids[:1]

    def reference_ids(self, task: Task) -> list[int]:
        """The completion a perfect answer would be: the reference in a code block, then EOS."""
        if task.id not in self._ref_ids:
            self._ref_ids[task.id] = self._completion(task.reference_code)
        return self._ref_ids[task.id]

    def reply_length(self, task: Task) -> int:
        """Tokens a correct reply needs: the reference's code block (a reply stops at its closing
        fence, so the EOS after it is not needed)."""
        return len(self.reference_ids(task)) - len(self.policy.eos_token_ids[:1])

    def reply_budget(self, tasks: list[Task], asked: int) -> int:
        """``max_new_tokens`` for replies to ``tasks``: ``asked``, or when it is 0 the longest
        reference reply plus ``BUDGET_MARGIN`` (rounded up to 8). A fixed budget shorter than some
        references is kept but warned about: those tasks cannot be answered correctly."""
        longest = max((self.reply_length(t) for t in tasks), default=1)
        if not asked:
            return 8 * math.ceil(longest * (1 + BUDGET_MARGIN) / 8)
        short = sum(self.reply_length(t) > asked for t in tasks)
        if short:
            log.warning("max_new_tokens %d is shorter than the reference reply of %d of %d scored tasks "
                        "(longest %d tokens): those can never be answered correctly (0 = fit the longest)",
                        asked, short, len(tasks), longest)
        return asked

    def fix_mask(self, task: Task) -> list[int]:
        """1 on the reference tokens a copy of the buggy code (ending as the reference does) gets wrong."""
        if task.id not in self._fix_masks:
            self._fix_masks[task.id] = fix_mask(self._completion(task.buggy_code), self.reference_ids(task))
        return self._fix_masks[task.id]

    def nll(self, prompt_ids: list[list[int]], tasks: list[Task], fix_weight: float) -> torch.Tensor:
        """Weighted token-mean NLL (at temperature 1) of each task's reference after its prompt,
        the fix's tokens weighted ``fix_weight``."""
        temperature, self.policy.temperature = self.policy.temperature, 1.0
        try:
            logp, _, mask, _ = self.policy.sequence_logprobs(prompt_ids, [self.reference_ids(t) for t in tasks],
                                                             extras=False)
        finally:
            self.policy.temperature = temperature
        masks = [self.fix_mask(t) for t in tasks] if fix_weight != 1.0 else []
        return weighted_nll(logp, mask, masks, fix_weight)
