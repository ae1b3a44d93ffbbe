"""`python -m finetune.export`: the aligned model as an external server (vLLM) loads it.

The adapter is merged into a bf16 copy of the base through the one loader (as the service's own engine merges
it in memory). Then, in compressed-tensors' formats, which vLLM reads from `config.json`:
- `--weights int8` stores every decoder linear weight as int8 with one scale per 64 inputs of an output channel
  (`--group-size`; weight-only, round-to-nearest, activations stay bf16; `pack-quantized`), served by vLLM's
  mixed-precision kernels (Machete on Hopper, Marlin elsewhere): half the bytes a decode step reads. Those kernels
  need layer widths in multiples of 128 (Llama 3.1 8B's are; SmolLM2's 576 is not). Groups of 64 rather than one
  scale per channel: a small model's rows hold outliers that one scale stretches over.
- `--weights fp8` stores them as float8 (e4m3) with one scale per output channel, and marks the layers' inputs
  for float8 with one scale per token, computed as they arrive (`float-quantized`): vLLM multiplies both on the
  FP8 tensor cores of Hopper and Ada GPUs. (vLLM's own `--quantization fp8` scales each weight tensor as one.)
The embeddings, norms and `lm_head` stay bf16. tests/finetune/test_export.py holds the shipped SmolLM2 adapter's
int8 copy within 1% of its bf16 perplexity; benchmarks/export_quality.py measures either copy with the refusal
rates (the fp8 copy misses the 1% on that small model: the README has the figures).

    python -m finetune.export --config configs/llama31-8b.yaml --weights int8 --out outputs/ulma-llama31-8b-int8
    vllm serve outputs/ulma-llama31-8b-int8 --served-model-name ulma ...
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from configs.cli import add_common_arguments, configure_logging, run_cli
from configs.errors import AppError
from configs.settings import ModelSettings

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger("finetune.export")

# The decoder's linear weights: what int8 and fp8 store (Llama's names; the embeddings and lm_head stay bf16).
QUANTIZED_WEIGHT = re.compile(r"(.*\.(?:q|k|v|o|gate|up|down)_proj)\.weight$")
# Files of the merged copy that a quantized copy writes anew; the rest (tokenizer, generation config) are copied.
REWRITTEN = ("config.json", "model.safetensors.index.json")
# compressed-tensors' storage format of each quantized `--weights`: int8 packed into int32, fp8 as float8 tensors.
STORAGE_FORMATS = {"int8": "pack-quantized", "fp8": "float-quantized"}


class ExportError(AppError, ValueError):
    """A model folder that cannot be exported; the message says what is wrong with it."""


def quantization_scheme(weights: str, group_size: int | None = None) -> Any:
    """int8: weight-only, symmetric, one scale per output channel or per `group_size` inputs of it. fp8: weights
    with one scale per output channel, inputs with one scale per token computed at run time (`group_size` unused)."""
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    if weights == "int8":
        return QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(
            num_bits=8, type="int", symmetric=True, dynamic=False,
            strategy="group" if group_size else "channel", group_size=group_size))
    if weights == "fp8":
        return QuantizationScheme(
            targets=["Linear"],
            weights=QuantizationArgs(num_bits=8, type="float", symmetric=True, dynamic=False, strategy="channel"),
            input_activations=QuantizationArgs(num_bits=8, type="float", symmetric=True, dynamic=True,
                                               strategy="token"))
    raise ExportError(f"no quantized format {weights!r}; choose one of {sorted(STORAGE_FORMATS)}")


def quantize_weight(weight: torch.Tensor, scheme: Any) -> dict[str, torch.Tensor]:
    """One linear weight as compressed-tensors stores it: int8 as `weight_packed` (int32) and `weight_shape`,
    fp8 as a float8 `weight`; both with `weight_scale`."""
    import torch
    from compressed_tensors.compressors.naive_quantized.base import FloatQuantizationCompressor
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization.utils import calculate_qparams

    size = scheme.weights.group_size or weight.shape[1]
    if weight.shape[1] % size:
        raise ExportError(f"a weight {tuple(weight.shape)} does not split into groups of {size} inputs")
    rows = weight.float().reshape(weight.shape[0], -1, size)  # (out, groups, size); one group per channel
    scale, _ = calculate_qparams(rows.amin(dim=2), rows.amax(dim=2), scheme.weights)
    # An all-zero row would give scale 0 and divide by it; any positive scale stores its zeros exactly.
    scale = torch.where(scale > 0, scale, torch.ones_like(scale)).to(weight.dtype)
    compressor = PackedQuantizationCompressor if scheme.weights.type == "int" else FloatQuantizationCompressor
    return compressor.compress({"weight": weight, "weight_scale": scale}, scheme)


def write_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: Path) -> Path:
    """A loaded model and its tokenizer as one folder, which appears only once complete."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, max_shard_size="5GB")
    tokenizer.save_pretrained(partial)
    partial.rename(out)
    return out


def save_merged(settings: ModelSettings, out: Path) -> Path:
    """The adapter in `settings` merged into a bf16 copy of the base, with its tokenizer (kept if already there)."""
    from finetune.modeling import load_model

    if (out / "config.json").is_file():
        return out
    bf16 = settings.model_copy(update={
        "dtype": "bfloat16", "quantization": settings.quantization.model_copy(update={"load_in_4bit": "never"})})
    model, tokenizer = load_model(bf16)  # merges the adapter into the bf16 weights
    return write_model(model, tokenizer, out)


def save_quantized(merged: Path, out: Path, weights: str = "int8", device: str = "cpu",
                   group_size: int | None = 64) -> Path:
    """A bf16 model folder (`save_merged`) with its decoder linear weights in `weights` (int8: `group_size`
    inputs per scale, None for one per output channel; fp8), shard by shard."""
    shards = sorted(merged.glob("*.safetensors"))
    if not (merged / "config.json").is_file() or not shards:
        raise ExportError(f"{merged} is not a model folder (config.json and *.safetensors expected)")
    config = json.loads((merged / "config.json").read_text(encoding="utf-8"))
    if "quantization_config" in config:
        raise ExportError(f"{merged} is already quantized ({config['quantization_config'].get('quant_method')})")
    scheme = quantization_scheme(weights, group_size)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        write_quantized_folder(merged, shards, partial, config, weights, scheme, device)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a failed export leaves nothing half-written
        raise
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    logger.info("%s: decoder linear weights in %s", out, weights)
    return out


def write_quantized_folder(merged: Path, shards: list[Path], partial: Path, config: dict[str, Any], weights: str,
                           scheme: Any, device: str) -> None:
    """`save_quantized`'s work into the folder `partial`: the shards, the config with its quantization, the rest."""
    from compressed_tensors import __version__ as compressed_tensors_version
    from compressed_tensors.quantization import QuantizationConfig, QuantizationStatus
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm

    weight_map: dict[str, str] = {}
    quantized = 0
    for shard in tqdm(shards, desc=f"{weights} weights", unit="shard"):
        stored: dict[str, torch.Tensor] = {}
        for name, tensor in load_file(shard, device=device).items():
            match = QUANTIZED_WEIGHT.match(name)
            if match is None:
                stored[name] = tensor
                continue
            quantized += 1
            for field, value in quantize_weight(tensor, scheme).items():
                stored[f"{match.group(1)}.{field}"] = value.contiguous().cpu()
        save_file({name: value.cpu() for name, value in stored.items()}, partial / shard.name,
                  metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(stored, shard.name))
    if not quantized:
        raise ExportError(f"{merged} has no decoder linear weights named as Llama's (*_proj.weight)")
    quantization = QuantizationConfig(config_groups={"group_0": scheme}, format=STORAGE_FORMATS[weights],
                                      quantization_status=QuantizationStatus.COMPRESSED, ignore=["lm_head"])
    config["quantization_config"] = {"quant_method": "compressed-tensors", "version": compressed_tensors_version,
                                     **quantization.model_dump(exclude={"quant_method"})}
    (partial / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (partial / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2) + "\n", encoding="utf-8")
    for path in merged.iterdir():
        if path.is_file() and path.suffix != ".safetensors" and path.name not in REWRITTEN:
            shutil.copy2(path, partial / path.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_common_arguments(parser, config_help="YAML settings profile (its model section: base and adapter)")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write (replaced if it exists)")
    parser.add_argument("--weights", choices=["bf16", *STORAGE_FORMATS], default="bf16",
                        help="bf16: merged only; int8: merged, then linear weights int8 (weight-only); fp8: "
                             "merged, then linear weights and their inputs float8")
    parser.add_argument("--group-size", type=int, default=64,
                        help="int8: one scale per this many inputs of a channel (0: one per output channel)")
    parser.add_argument("--device", default="cpu", help="where scales are computed (cuda is faster for 8B)")
    args = parser.parse_args(argv)
    configure_logging(args.debug)

    def export() -> int:
        from configs.settings import load_settings

        settings = load_settings(args.config).model
        if args.weights == "bf16":
            shutil.rmtree(args.out, ignore_errors=True)
            save_merged(settings, args.out)
        else:
            merged = args.out.with_name(args.out.name + ".bf16")
            shutil.rmtree(merged, ignore_errors=True)
            save_quantized(save_merged(settings, merged), args.out, args.weights, args.device,
                           args.group_size or None)
            shutil.rmtree(merged)
        print(f"wrote {args.out} ({args.weights})")
        return 0

    return run_cli(export, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
