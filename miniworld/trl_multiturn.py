"""Multi-turn self-correction for TRL's ``GRPOTrainer``, the COCOS recipe, through TRL's
(experimental) ``rollout_func``.

Per prompt, the rollout generates a first attempt without gradient, runs its code in the
sandbox, and generates a second attempt from a prompt that carries the environment's feedback
(the same second-turn prompt ``miniworld.make(...).step`` returns). TRL trains on the second
attempt only; its reward is COCOS's accumulated reward ``gamma * r1 + (r2 - r1)``: credit for the
first attempt and for what the correction added. Turn 1's reward reaches the reward function as
the ``first_reward`` column the rollout returns (TRL forwards extra rollout keys to rewards).

    with grpo_setup("smoke") as mw:
        turns = SelfCorrection(mw, gamma=0.5)
        trainer = GRPOTrainer(model=..., args=config, train_dataset=mw.dataset,
                              reward_funcs=[turns.reward], rollout_func=turns.rollout)
        trainer.train()

Generation uses the trainer's own model and ``generation_config`` (sampling at its temperature,
``max_completion_length`` new tokens): transformers' ``generate``, as GRPOTrainer does without
vLLM. The returned log-probs are the sampled tokens' (temperature-scaled, normalised); TRL uses
them only for vLLM's importance-sampling correction.
"""
from __future__ import annotations

from typing import Any

import torch

from miniworld.checks import accumulated_reward
from miniworld.extract import extract_code
from miniworld.kinds.registry import messages
from miniworld.trl_reward import GRPOSetup, MiniWorldReward, _text
from miniworld.task import Task


class AccumulatedReward:
    """The reward function of the second attempts: ``accumulated_reward`` of turn 1's reward (the
    rollout's ``first_reward`` column) and turn 2's; turn 2's outcome shares go to TRL's logs."""

    __name__ = "miniworld_accumulated_reward"  # TRL logs reward functions by name

    def __init__(self, setup: GRPOSetup, gamma: float) -> None:
        self.gamma = gamma
        self.scorer = MiniWorldReward(setup.sandbox, setup.tasks)

    def __call__(self, prompts: list, completions: list, task_id: list[str], first_reward: list[float],
                 **kwargs: Any) -> list[float]:
        second = self.scorer(prompts, [_text(c) for c in completions], task_id, **kwargs)
        return [accumulated_reward(r1, r2, self.gamma) for r1, r2 in zip(first_reward, second)]


class SelfCorrection:
    """A ``rollout_func`` (``rollout``) and the matching reward function (``reward``)."""

    def __init__(self, setup: GRPOSetup, gamma: float = 0.5) -> None:
        self.setup = setup
        self.by_prompt = {messages(t)[-1]["content"]: t for t in setup.tasks}
        self.reward = AccumulatedReward(setup, gamma)

    def _task(self, prompt: Any) -> Task:
        content = prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)
        if content not in self.by_prompt:
            raise KeyError("a prompt of the batch is no task's first-turn prompt (train_dataset must be grpo_setup's)")
        return self.by_prompt[content]

    @torch.no_grad()
    def _generate(self, trainer: Any, chats: list[list[dict]]) -> tuple[list[list[int]], list[list[int]], list[list[float]]]:
        """(prompt ids, completion ids up to the first EOS, their log-probs) from the trainer's model."""
        tok = trainer.processing_class
        model = trainer.accelerator.unwrap_model(trainer.model)
        prompts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True) for c in chats]
        prompts = [list(p["input_ids"]) if hasattr(p, "keys") else list(p) for p in prompts]  # transformers 5: a mapping
        width = max(len(p) for p in prompts)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
        was_training = model.training
        model.eval()
        try:
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=trainer.generation_config,
                                 output_scores=True, return_dict_in_generate=True)
        finally:
            model.train(was_training)
        new = out.sequences[:, width:]
        scores = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        eos = set(trainer.eos_token_ids) if hasattr(trainer, "eos_token_ids") else {tok.eos_token_id}
        completions, logprobs = [], []
        for row, lp in zip(new.tolist(), scores.float().cpu().tolist()):
            end = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            completions.append(row[:end])
            logprobs.append(lp[:end])
        return prompts, completions, logprobs

    def rollout(self, prompts: list, trainer: Any) -> dict[str, list]:
        """Turn 1 (context only), the sandbox's feedback, turn 2 (what GRPO trains on)."""
        tasks = [self._task(p) for p in prompts]
        _, first_ids, _ = self._generate(trainer, [messages(t) for t in tasks])
        first_text = trainer.processing_class.batch_decode(first_ids, skip_special_tokens=True)
        codes = [extract_code(text) for text in first_text]
        first = self.setup.sandbox.evaluate_many(list(zip(tasks, codes)))
        second = [messages(t, [(code, r.feedback)]) for t, code, r in zip(tasks, codes, first)]
        prompt_ids, completion_ids, logprobs = self._generate(trainer, second)
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs,
                "task_id": [t.id for t in tasks], "first_reward": [float(r.reward) for r in first],
                "first_outcome": [r.outcome for r in first]}
