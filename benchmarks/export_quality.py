"""Does a quantized export (`--weights int8` or `fp8`) keep the aligned model's quality?

The real aligned model (the packaged SmolLM2-135M-Instruct with the shipped ULMA adapter, or `--base` and
`--adapter`) is exported by `finetune.export` twice: merged in bf16, and merged with its decoder linear weights
quantized: weight-only int8 (`--group-size` inputs per scale), or fp8 weights and inputs. Both are read back from
disk by transformers (the quantized weights restored to bf16: what vLLM's int8 kernels multiply by, in bf16
activations with fp32 accumulation; for fp8 each linear layer's input is also rounded to float8 with one scale per
token, as vLLM's FP8 kernels take it) and compared in plain `generate`, greedy:
- agreement of the quantized copy's answers with the bf16 copy's on `--prompts` HH test conversations;
- perplexity of the HH test chosen responses after their conversations, teacher-forced;
- with `--harmful`, `--benign` and `--lookalike` prompt sets (the alignment evaluation's flags), its refusal
  rates (its judge, its answer length, batched as it batches): per set, and pooled per kind as the evaluation
  reports them; the largest difference in points of each, and per set how many prompts one copy refused and the
  other answered (whether a difference of a few prompts is disagreement both ways or one copy leaning).
The issue's bars for a quantized serving path: perplexity within 1% of the bf16 merged model, refusal rates
within 2 points. vLLM itself cannot serve this small model's int8 copy (its int8 kernels need layer widths in
multiples of 128; SmolLM2's are 576), so the engine is plain `generate` for both. Writes
benchmarks/results/export_quality.json; result fields are named by the copy (`int8_perplexity`, `fp8_perplexity`).

    python -m benchmarks.export_quality --harmful var/alignment/sets/test/test_advbench.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.engine_agreement import agreement, hh_examples
from benchmarks.vllm_agreement import (
    largest_difference_points,
    load_refusal_sets,
    perplexity,
    reference_answers,
    reference_logprob_sums,
    refusal_rates,
    refusal_verdicts,
    without_stop,
)
from configs.cli import configure_logging, run_cli
from configs.settings import EMBEDDED_ADAPTER, EMBEDDED_GENERATOR, PROJECT_ROOT, ModelSettings, load_settings
from lab.alignment.generation import GenerationSettings, eos_ids_of, generate_answers

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "export_quality.json"
KINDS = ("harmful", "benign", "lookalike")  # the alignment evaluation's prompt kinds, its pooled rates


def load_copy(directory: Path, device: str) -> Any:
    """An exported folder in bf16 on `device`; a quantized one with its weights restored to bf16 at load, and its
    linear layers' inputs rounded as the served kernels round them (`round_inputs_as_served`)."""
    import torch
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    quantization = json.loads((directory / "config.json").read_text(encoding="utf-8")).get("quantization_config")
    extra = {"quantization_config": CompressedTensorsConfig(run_compressed=False)} if quantization else {}
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.bfloat16, device_map={"": device},
                                                 **extra).eval()
    if quantization:
        round_inputs_as_served(model, quantization)
    return model


def round_inputs_as_served(model: Any, quantization: dict[str, Any]) -> None:
    """Round the inputs of the quantized linear layers as the copy's `input_activations` say (fp8: float8, one
    scale per token, computed as they arrive; weight-only int8: none), through compressed-tensors' own rounding;
    transformers' loader restores the weights only."""
    from compressed_tensors.quantization import QuantizationScheme
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize
    from compressed_tensors.quantization.utils import compute_dynamic_scales_and_zp

    from finetune.export import QUANTIZED_WEIGHT

    (group,) = quantization["config_groups"].values()
    inputs = QuantizationScheme.model_validate(group).input_activations
    if inputs is None:
        return

    def rounded(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        scale, zero_point = compute_dynamic_scales_and_zp(value=args[0], args=inputs, module=module)
        return (fake_quantize(args[0], scale, zero_point, inputs), *args[1:])

    for name, module in model.named_modules():
        if QUANTIZED_WEIGHT.match(f"{name}.weight"):
            module.register_forward_pre_hook(rounded)


def measure_copy(model: Any, tokenizer: Any, args: argparse.Namespace, prompts: list[list[int]],
                 sequences: list[list[int]], starts: list[int], conversations: list[Any]) -> dict[str, Any]:
    """Greedy answers (token ids, end-of-turn dropped), response log-probabilities and the judge's refusal
    verdicts on the prompt sets' answers."""
    stop_ids = set(eos_ids_of(model, tokenizer))
    generation = GenerationSettings(max_new_tokens=args.refusal_new_tokens,
                                    repetition_penalty=args.repetition_penalty, batch_size=args.batch_size)
    return {
        "answers": [without_stop(answer, stop_ids) for answer in reference_answers(model, prompts, args.new_tokens)],
        "logprob_sums": reference_logprob_sums(model, sequences, starts),
        "refused": refusal_verdicts(generate_answers(model, tokenizer, conversations, generation,
                                                     desc="refusal sets", show_progress=True))
        if conversations else [],
    }


def run(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    import torch
    import transformers
    from transformers import AutoTokenizer

    from finetune.export import save_merged, save_quantized

    specs = [(kind, spec) for kind in KINDS for spec in getattr(args, kind)]
    refusal_sets, set_names = load_refusal_sets([spec for _, spec in specs])
    kind_of = {prompt_set.name: kind for prompt_set, (kind, _) in zip(refusal_sets, specs, strict=True)}
    kinds = [kind_of[name] for name in set_names]
    data = args.data or load_settings(None).data_dir / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    examples = hh_examples(data, args.prompts)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings = ModelSettings(name_or_path=args.base, adapter_path=str(args.adapter), device=device)
    copy = args.weights  # the quantized copy's name in the result
    group_size = (args.group_size or None) if copy == "int8" else None
    label = copy + (f"-g{group_size}" if group_size else "-channel")
    bf16_dir = save_merged(settings, args.work_dir / "bf16")
    quantized_dir = save_quantized(bf16_dir, args.work_dir / label, copy, device, group_size)

    tokenizer = AutoTokenizer.from_pretrained(bf16_dir)
    prompts = [tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True,
                                             return_dict=False) for conversation, _ in examples]
    responses = [tokenizer(response, add_special_tokens=False)["input_ids"] for _, response in examples]
    sequences = [p + r for p, r in zip(prompts, responses, strict=True)]
    starts = [len(p) for p in prompts]
    counts = [len(r) for r in responses]
    conversations = [conversation for prompt_set in refusal_sets for conversation in prompt_set.conversations]
    found = {}
    for name, directory in (("bf16", bf16_dir), (copy, quantized_dir)):
        model = load_copy(directory, device)
        found[name] = measure_copy(model, AutoTokenizer.from_pretrained(directory), args, prompts, sequences,
                                   starts, conversations)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    bf16_ppl, quantized_ppl = (perplexity(found[name]["logprob_sums"], counts) for name in ("bf16", copy))
    return {
        "command": "python -m benchmarks.export_quality " + " ".join(argv or sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "model": args.base,
        "adapter": str(args.adapter),
        copy: {"group_size": group_size or "one scale per output channel",
               **({"inputs": "float8, one scale per token"} if copy == "fp8" else {}),
               "bytes": sum(path.stat().st_size for path in quantized_dir.glob("*.safetensors")),
               "bf16_bytes": sum(path.stat().st_size for path in bf16_dir.glob("*.safetensors"))},
        "prompts": len(prompts),
        "new_tokens": args.new_tokens,
        "response_tokens": sum(counts),
        "agreement_with_bf16": agreement(found["bf16"]["answers"], found[copy]["answers"]),
        "bf16_perplexity": round(bf16_ppl, 4),
        f"{copy}_perplexity": round(quantized_ppl, 4),
        "perplexity_ratio": round(quantized_ppl / bf16_ppl, 4),
        "refusal_sets": {prompt_set.name: prompt_set.describe() for prompt_set in refusal_sets},
        "refusal_new_tokens": args.refusal_new_tokens,
        "refusal_repetition_penalty": args.repetition_penalty,
        **(refusal_comparison(found["bf16"]["refused"], found[copy]["refused"], set_names, kinds, copy)
           if refusal_sets else {}),
    }


def refusal_comparison(bf16: list[bool], quantized: list[bool], set_names: list[str], kinds: list[str],
                       copy: str) -> dict[str, Any]:
    """Both copies' refusal rates per set and pooled per kind, their largest differences, and per set the prompts
    whose verdict changed in each direction; the quantized copy's fields carry its name (`copy`)."""
    rates = {name: {"set": refusal_rates(refused, set_names), "kind": refusal_rates(refused, kinds)}
             for name, refused in (("bf16", bf16), (copy, quantized))}
    changed: dict[str, dict[str, int]] = {name: {f"{copy}_only_refused": 0, "bf16_only_refused": 0}
                                          for name in dict.fromkeys(set_names)}
    for name, bf16_refused, quantized_refused in zip(set_names, bf16, quantized, strict=True):
        if quantized_refused != bf16_refused:
            changed[name][f"{copy}_only_refused" if quantized_refused else "bf16_only_refused"] += 1
    return {
        "bf16_refusal_rates": rates["bf16"]["set"],
        f"{copy}_refusal_rates": rates[copy]["set"],
        "refusal_rate_largest_difference_points": largest_difference_points(rates[copy]["set"],
                                                                            rates["bf16"]["set"]),
        "bf16_refusal_rates_by_kind": rates["bf16"]["kind"],
        f"{copy}_refusal_rates_by_kind": rates[copy]["kind"],
        "refusal_rate_by_kind_largest_difference_points": largest_difference_points(rates[copy]["kind"],
                                                                                    rates["bf16"]["kind"]),
        "refusal_verdicts_changed": changed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=EMBEDDED_GENERATOR, help="the base model the adapter was trained on")
    parser.add_argument("--adapter", type=Path, default=EMBEDDED_ADAPTER)
    parser.add_argument("--weights", choices=["int8", "fp8"], default="int8",
                        help="the quantized copy (python -m finetune.export --weights): int8 weight-only, or fp8 "
                             "weights and inputs")
    parser.add_argument("--group-size", type=int, default=64, help="the int8 copy's inputs per scale (0: per channel)")
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--new-tokens", type=int, default=64)
    for kind in KINDS:
        parser.add_argument(f"--{kind}", action="append", default=[], metavar="FILE[:N]",
                            help=f"{kind} prompts of the alignment evaluation (safety-prompts JSON, AdvBench CSV; "
                                 "repeatable): refusal rates of both copies")
    parser.add_argument("--refusal-new-tokens", type=int, default=GenerationSettings.max_new_tokens)
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=GenerationSettings.batch_size)
    parser.add_argument("--data", type=Path, help="HH records (default: <data_dir>/hh-rlhf/harmless-base-test.jsonl.gz)")
    parser.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda where there is one")
    parser.add_argument("--work-dir", type=Path, default=PROJECT_ROOT / "var" / "export-quality")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")
    args = parser.parse_args(argv)
    configure_logging(args.debug)

    def measure() -> int:
        result = run(args, argv)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        match = result["agreement_with_bf16"]
        copy = args.weights
        print(f"{'copy':<6}{'perplexity':>12}  refusal rates")
        for name in ("bf16", copy):
            print(f"{name:<6}{result[f'{name}_perplexity']:>12}  {result.get(f'{name}_refusal_rates', '-')}")
        print(f"{copy}/bf16 perplexity {result['perplexity_ratio']}x; {match['exact_matches']}/{result['prompts']} "
              "greedy answers identical")
        if "refusal_verdicts_changed" in result:
            print(f"pooled per kind: bf16 {result['bf16_refusal_rates_by_kind']}, {copy} "
                  f"{result[f'{copy}_refusal_rates_by_kind']}; largest refusal-rate difference "
                  f"{result['refusal_rate_largest_difference_points']} points per set, "
                  f"{result['refusal_rate_by_kind_largest_difference_points']} per kind")
        return 0

    return run_cli(measure, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
