"""The policy: a Hugging Face causal LM that writes code and reports how it chose each token.

The learner replays stored trajectories long after they were generated, so the PPO importance
ratio compares a *stored* behaviour log-prob with one recomputed now. That only works if both are
computed the same way, which is this module's one invariant:

* ``generate`` samples from ``softmax(logits / T)`` and nothing else (top-k, top-p, repetition
  penalties are switched off explicitly, since ``generate`` otherwise applies top-k 50), and stores
  ``log softmax(logits / T)`` of each sampled token and the entropy of that same distribution;
* ``sequence_logprobs`` recomputes both in one forward over ``[left-padded prompt | right-padded
  completion]`` with the position ids ``generate`` uses, through TRL's own
  ``selective_log_softmax`` and ``entropy_from_logits`` (TRL is pinned: they are not exported).

So at initialisation the ratio is 1 up to float noise (tests hold it to 1e-4 on the CPU).

Which models can be loaded, and from where, is ``cosmocore.model.loading``'s business.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedModel
from trl.trainer.utils import entropy_from_logits, selective_log_softmax

from cosmocore.model import frozen_prefix
from cosmocore.model.batching import left_pad, masked_mean, positions
from cosmocore.model.frozen_prefix import FrozenPrefix
from cosmocore.model.engines import make_engine
from cosmocore.model.generation import Generation, PolicyError  # noqa: F401 - PolicyError re-exported
from cosmocore.model.loading import (
    DEFAULT_MODEL,
    METADATA_FILE,
    adapter_base,
    is_adapter_folder,
    load_model,
    resolve_device,
)

_CHECKPOINT_FORMAT = 1


def _prepare_tokenizer(tokenizer: Any) -> Any:
    """Batched generation needs a pad token and left padding (new tokens must sit flush right)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    tokenizer.padding_side = "left"
    return tokenizer


class _BaseWithoutAdapters(torch.nn.Module):
    """The LoRA policy's reference: the same module with its adapters switched off.

    It owns no parameters (the wrapped model is deliberately not registered as a submodule), is
    always in eval mode and runs without gradients, so it can be passed wherever a frozen
    reference model is expected without doubling memory."""

    def __init__(self, peft_model: torch.nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_peft", peft_model)
        super().train(False)

    def train(self, mode: bool = True) -> _BaseWithoutAdapters:
        return super().train(False)

    def forward(self, **kwargs: Any) -> Any:
        peft_model = self._peft
        was_training = peft_model.training
        peft_model.eval()
        try:
            with torch.no_grad(), peft_model.disable_adapter():
                return peft_model(**kwargs)
        finally:
            peft_model.train(was_training)


# --------------------------------------------------------------------------------------------
# The policy
# --------------------------------------------------------------------------------------------


class Policy:
    """A causal LM + tokenizer on one device, with the sampling/recompute pair PPO needs."""

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        tokenizer: Any,
        device: torch.device,
        temperature: float = 0.9,
        seed: int = 0,
    ) -> None:
        if not temperature > 0:
            raise PolicyError(f"temperature must be positive, got {temperature!r}")
        self.name = name
        self.model = model
        self.tokenizer = _prepare_tokenizer(tokenizer)
        self.device = device
        self.temperature = float(temperature)
        self.seed = seed
        self._reference: torch.nn.Module | None = None
        self._frozen: FrozenPrefix | None = None  # set by train_top_layers (see frozen_prefix)
        self._engine = make_engine("hf", self)  # see use_engine
        eos = {tokenizer.eos_token_id, getattr(self._base_model().config, "eos_token_id", None)}
        flat: set[int] = set()
        for e in eos:
            flat.update(e if isinstance(e, (list, tuple)) else [e] if e is not None else [])
        self.eos_token_ids: list[int] = sorted(flat)
        # generate() merges the model's own generation defaults into ours; start from a clean one
        # so nothing from a checkpoint's generation_config.json can change the sampler.
        self._base_model().generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=self.eos_token_ids,
            pad_token_id=tokenizer.pad_token_id,
        )

    # ---- loading ----------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        name: str = DEFAULT_MODEL,
        device: str | None = None,
        lora: bool | None = None,
        seed: int = 0,
        temperature: float = 0.9,
        cache_dir: str | None = None,
    ) -> Policy:
        """Load a named model (``smollm2-135m``, ``tiny``), a Hugging Face id or a local folder.

        ``lora=None`` turns adapters on for models over ~1B parameters (full fine-tuning of those
        does not fit a laptop or a single mid-size GPU with Adam states), off otherwise. ``seed``
        fixes the ``tiny`` weights and the adapter init; the global RNG is left untouched."""
        dev = resolve_device(device)
        if is_adapter_folder(name):
            return cls._load_adapter(name, dev, seed, temperature, cache_dir)
        model, tokenizer = load_model(name, dev, lora, seed, cache_dir)
        return cls(name, model, tokenizer, dev, temperature=temperature, seed=seed)

    @classmethod
    def _load_adapter(
        cls, path: str, dev: torch.device, seed: int, temperature: float, cache_dir: str | None
    ) -> Policy:
        """A folder written by ``save`` under LoRA: its base, by the name it was loaded with,
        plus the trained adapter (trainable, so training can go on)."""
        from peft import PeftModel

        base_name, seed = adapter_base(path, seed)
        base = cls.load(base_name, device=str(dev), lora=False, seed=seed, temperature=temperature, cache_dir=cache_dir)
        model = PeftModel.from_pretrained(base.model, Path(os.path.expanduser(path)), is_trainable=True)
        model.eval()
        return cls(path, model, base.tokenizer, dev, temperature=temperature, seed=seed)

    # ---- introspection ----------------------------------------------------------------------

    @property
    def is_lora(self) -> bool:
        return hasattr(self.model, "disable_adapter") and hasattr(self.model, "peft_config")

    def _base_model(self) -> PreTrainedModel:
        """The underlying transformers model (through a PEFT wrapper if any)."""
        return self.model.get_base_model() if self.is_lora else self.model  # type: ignore[return-value]

    @property
    def hidden_size(self) -> int:
        return int(self._base_model().config.hidden_size)

    def train_top_layers(self, k: int, cache_mb: float = 0.0) -> None:
        """Freeze everything below the top ``k`` transformer blocks (embeddings, tied head and
        lower blocks included); the final norm and, under LoRA, only the top blocks' adapters stay
        trainable. Autograd then stops at the lowest trained block, so a backward pass costs
        about ``k / n_layers`` of a full one: what makes CPU fine-tuning fit a quick budget.
        ``cache_mb > 0`` also keeps the frozen blocks' output per sequence (``FrozenPrefix``,
        full fine-tuning of a supported model only), so ``sequence_logprobs`` and
        ``prompt_states`` run just the top ``k`` blocks on sequences seen before.
        Call before building an optimizer; ``k <= 0`` or ``k >= n_layers`` changes nothing."""
        layers = getattr(getattr(self._base_model(), "model", None), "layers", None)
        if layers is None:
            raise PolicyError(f"model {self.name!r}: cannot find its transformer blocks to freeze")
        if k <= 0 or k >= len(layers):
            return
        keep = {id(p) for block in list(layers)[-k:] for p in block.parameters()}
        keep |= {id(p) for p in self._base_model().model.norm.parameters()}
        for p in self.model.parameters():
            if id(p) not in keep:
                p.requires_grad_(False)
        if cache_mb > 0 and not self.is_lora and frozen_prefix.supports(self.model):
            self._frozen = FrozenPrefix(len(layers) - k, cache_mb)

    @property
    def frozen_prefix(self) -> FrozenPrefix | None:
        """The frozen blocks' state cache, when ``train_top_layers`` set one up."""
        return self._frozen

    def num_parameters(self, trainable_only: bool = False) -> int:
        params = self.model.parameters()
        return sum(p.numel() for p in params if p.requires_grad or not trainable_only)

    # ---- prompts ----------------------------------------------------------------------------

    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Chat-templated prompt ids ending with the assistant header. Models without a chat
        template get a plain ``role: content`` transcript (base models still continue it)."""
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
        # The template already holds the special tokens; adding BOS again would shift the model.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # ---- generation -------------------------------------------------------------------------

    @property
    def engine(self) -> str:
        """The rollout engine ``generate`` uses (``generation.ENGINES``)."""
        return self._engine.name

    def use_engine(self, name: str) -> None:
        """Generate with engine ``name`` from now on (``hf``, ``torch``, ``vllm``); ValueError
        naming it when unknown, PolicyError when it cannot run here (vllm without CUDA)."""
        if name != self._engine.name:
            self._engine = make_engine(name, self)

    def generate(
        self, messages: list[list[dict]], max_new_tokens: int = 256, greedy: bool = False, keep_prompts: bool = False
    ) -> list[Generation]:
        """Sample (or greedily decode) one reply per conversation, in one batch, with the current
        engine. Each reply stops at EOS or right after the closing fence of its code block.
        ``keep_prompts``: these prompts come back (an eval split), so with a frozen blocks' cache
        their lower keys and values are kept and reused. Log-probs and entropy are the policy's
        ``log softmax(logits / T)`` (scaled by the temperature even when greedy), so they match
        ``sequence_logprobs``. Sampling draws from torch's global RNG: seed it to reproduce."""
        if not messages:
            return []
        prompts = [self.encode_chat(m) for m in messages]
        was_training = self.model.training
        self.model.eval()
        try:
            return self._engine.generate(self, prompts, max_new_tokens, greedy, keep_prompts)
        finally:
            self.model.train(was_training)

    # ---- recomputation (the loss side) ------------------------------------------------------

    def sequence_logprobs(
        self,
        prompt_ids: list[list[int]],
        completion_ids: list[list[int]],
        model: torch.nn.Module | None = None,
        extras: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Log-probs and entropy of ``completion_ids`` given ``prompt_ids``, from ONE forward.

        Returns ``(logprobs [B,T], entropy [B,T], mask [B,T], pooled_hidden [B,H])`` as float32
        on ``self.device``; padded positions are 0 in all three per-token tensors. The pooled
        hidden state is the mean last hidden state over the prompt tokens (the critic's and the
        tagger's view of the task). Gradients flow when ``model`` (default: the policy) is in
        train mode; in eval mode this runs under ``no_grad``. ``model`` may be the frozen
        ``reference_model()`` for the KL term; ``extras=False`` skips what the KL term and the
        NLL terms do not need (entropy comes back as zeros, the pooled state as None, no hidden
        states kept). Through the frozen blocks' cache when ``train_top_layers`` set one up."""
        if len(prompt_ids) != len(completion_ids):
            raise ValueError("prompt_ids and completion_ids must have the same length")
        net = self.model if model is None else model
        pad = self.tokenizer.pad_token_id
        prompt, prompt_mask = left_pad(prompt_ids, pad, self.device)
        width = max(1, max((len(c) for c in completion_ids), default=0))
        completion = torch.full((len(completion_ids), width), pad, dtype=torch.long)
        completion_mask = torch.zeros((len(completion_ids), width), dtype=torch.long)
        for i, row in enumerate(completion_ids):
            if row:
                completion[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
                completion_mask[i, : len(row)] = 1
        completion, completion_mask = completion.to(self.device), completion_mask.to(self.device)
        input_ids = torch.cat([prompt, completion], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)

        grad = contextlib.nullcontext() if net.training else torch.no_grad()
        with grad:
            final, logits = self._forward(net, input_ids, attention_mask, keep=width + 1, states=extras)
            # Logits at position j predict token j+1: the last prompt token predicts the first
            # completion token, and the final position predicts nothing we score.
            logits = logits[:, :-1, :].float() / self.temperature
            mask = completion_mask.float()
            logprobs = selective_log_softmax(logits, completion) * mask
            if not extras:
                return logprobs, torch.zeros_like(logprobs), mask, None
            entropy = entropy_from_logits(logits) * mask
            pooled = masked_mean(final[:, : prompt.shape[1]], prompt_mask)
        return logprobs, entropy, mask, pooled

    def _forward(self, net: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: int,
                 states: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(final hidden states if ``states``, logits of the last ``keep`` positions): from the
        frozen blocks' cache and the top blocks when there is one, else one full forward."""
        pos = positions(attention_mask)
        if self._frozen is not None and (net is self.model or net is self._reference):
            final = self._frozen.hidden(net, input_ids, attention_mask, pos)
            return final, net.lm_head(final[:, -keep:] if keep else final)
        out = net(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos,
                  output_hidden_states=states, use_cache=False, logits_to_keep=keep)
        return (out.hidden_states[-1] if states else None), out.logits

    def prompt_states(self, prompt_ids: list[list[int]]) -> torch.Tensor:
        """Mean final hidden state over each prompt's tokens, ``[B,H]`` float32 without gradients:
        the pooled state ``sequence_logprobs`` returns, from the prompts alone (the model is
        causal, so what follows a prompt cannot change it), for the critic and the tagger."""
        prompt, prompt_mask = left_pad(prompt_ids, self.tokenizer.pad_token_id, self.device)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                final, _ = self._forward(self.model, prompt, prompt_mask, keep=1, states=True)
        finally:
            self.model.train(was_training)
        return masked_mean(final, prompt_mask)

    def reference_model(self) -> torch.nn.Module:
        """The frozen reference policy for the KL term, to pass as ``sequence_logprobs(model=)``.

        Under LoRA it is the same network with adapters disabled (no extra memory, always the
        base weights). Otherwise it is a frozen copy of the weights *as they are at the first
        call*: call it before training starts (``load_state_dict_from_checkpoint`` does so
        itself, so a resumed run keeps the original reference rather than the checkpoint)."""
        if self._reference is None:
            if self.is_lora:
                self._reference = _BaseWithoutAdapters(self.model)
            else:
                ref = copy.deepcopy(self.model)
                ref.requires_grad_(False)
                ref.eval()
                self._reference = ref
        return self._reference

    def reference_logprobs(self, prompt_ids: list[list[int]], completion_ids: list[list[int]]) -> torch.Tensor:
        """Convenience: the reference policy's log-probs ``[B,T]`` (padded positions 0)."""
        return self.sequence_logprobs(prompt_ids, completion_ids, model=self.reference_model(), extras=False)[0]

    def pooled_hidden(self, texts: list[str], max_tokens: int = 1024, batch_size: int = 8) -> torch.Tensor:
        """Mean last hidden state of each raw text (no chat template), ``[B,H]`` float32 on
        ``self.device`` (like ``sequence_logprobs``' pooling, so the two concatenate), no
        gradients: the tagger's feature of a piece of code on its own."""
        rows: list[torch.Tensor] = []
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(texts), batch_size):
                chunk = texts[start:start + batch_size]
                ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"][:max_tokens] for t in chunk]
                input_ids, mask = left_pad(ids, self.tokenizer.pad_token_id, self.device)
                if input_ids.shape[1] == 0:
                    rows.append(torch.zeros((len(chunk), self.hidden_size), device=self.device))
                    continue
                with torch.no_grad():
                    out = self.model(
                        input_ids=input_ids,
                        attention_mask=mask,
                        position_ids=positions(mask),
                        output_hidden_states=True,
                        use_cache=False,
                        logits_to_keep=1,
                    )
                rows.append(masked_mean(out.hidden_states[-1], mask))
        finally:
            self.model.train(was_training)
        return torch.cat(rows) if rows else torch.zeros((0, self.hidden_size), device=self.device)

    # ---- persistence ------------------------------------------------------------------------

    def save(self, path: str) -> None:
        """Model (or only the adapter, under LoRA) and tokenizer as safetensors; ``Policy.load``
        reads the folder back (an adapter folder reloads its base by name)."""
        folder = Path(os.path.expanduser(path))
        folder.mkdir(parents=True, exist_ok=True)
        if self.is_lora:
            # Embeddings are never adapted here; "auto" would ask the hub whether they changed.
            self.model.save_pretrained(folder, safe_serialization=True, save_embedding_layers=False)
        else:
            self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        meta = {"name": self.name, "seed": self.seed, "temperature": self.temperature, "lora": self.is_lora}
        (folder / METADATA_FILE).write_text(json.dumps(meta, indent=1) + "\n")

    def state_dict_for_checkpoint(self) -> dict:
        """The trainable state (adapter weights under LoRA, all weights otherwise), copied to the
        CPU so later optimizer steps cannot change a checkpoint still being written."""
        if self.is_lora:
            from peft import get_peft_model_state_dict

            weights = get_peft_model_state_dict(self.model, save_embedding_layers=False)
            partial = False
        else:
            full = self.model.state_dict()
            weights = self.trained_only(full)
            partial = len(weights) < len(full)
        return {
            "format": _CHECKPOINT_FORMAT,
            "name": self.name,
            "lora": self.is_lora,
            "partial": partial,
            "weights": {k: v.detach().to("cpu", copy=True) for k, v in weights.items()},
        }

    def trainable_names(self) -> set[str]:
        """Names of the parameters that train (all but those ``train_top_layers`` froze)."""
        return {n for n, p in self.model.named_parameters() if p.requires_grad}

    def trained_only(self, state: dict) -> dict:
        """``state`` (a state dict of this model or its reference copy) without the frozen
        blocks when some are frozen: those stay as loaded, so a checkpoint need not hold them."""
        trainable = self.trainable_names()
        if len(trainable) == sum(1 for _ in self.model.parameters()):
            return state
        return {k: v for k, v in state.items() if k in trainable}

    def load_state_dict_from_checkpoint(self, state: dict) -> None:
        """Restore ``state_dict_for_checkpoint`` output. Materialises the reference first (see
        ``reference_model``) so the KL term keeps pointing at the initial policy."""
        if bool(state.get("lora")) != self.is_lora:
            kind = "LoRA adapter" if state.get("lora") else "full model"
            raise PolicyError(f"checkpoint holds a {kind} state but policy {self.name!r} is not set up for it")
        self.reference_model()
        if self.is_lora:
            from peft import set_peft_model_state_dict

            result = set_peft_model_state_dict(self.model, state["weights"])
            unexpected = getattr(result, "unexpected_keys", [])
            if unexpected:
                raise PolicyError(f"checkpoint adapter does not fit policy {self.name!r}: {unexpected[:3]}")
        elif state.get("partial"):  # only the trained blocks were saved: the rest is as loaded
            result = self.model.load_state_dict(state["weights"], strict=False)
            if result.unexpected_keys or set(state["weights"]) - self.trainable_names():
                raise PolicyError(f"checkpoint trained blocks do not fit policy {self.name!r} (other --train-layers?)")
        else:
            self.model.load_state_dict(state["weights"])
            if self._frozen is not None:  # the frozen blocks were overwritten too
                self._frozen.clear()
