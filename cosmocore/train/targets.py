"""The supervised targets the warm start and the night's corrective term train on: each train
task's reference completion (its code in a block, then EOS), the fix tokens in it, and the
weighted NLL of those completions after their prompts. Memoised per task: the warm start and
every night ask again."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from cosmocore.train.losses import fix_mask, weighted_nll
from miniworld.task import Task

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
