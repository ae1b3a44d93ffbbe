"""Do the continuous-batching engine and plain `generate` give the same greedy answers on the same weights?

Loads the model once (settings: `--config`, e.g. bf16 with the adapter merged), answers `--prompts` HH test prompts
greedily with the sequential engine (plain `generate`, one at a time) and with the continuous engine (all at
once, batched), without repetition penalty on either side, and reports exact matches and where answers first
differ. Writes benchmarks/results/engine_agreement.json.

    python -m benchmarks.engine_agreement --config FILE --prompts 50
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from configs.cli import add_common_arguments, configure_logging, run_cli
from configs.settings import PROJECT_ROOT, load_settings

logger = logging.getLogger("benchmarks.engine_agreement")

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "engine_agreement.json"


def hh_examples(path: Path, count: int) -> list[tuple[list[dict[str, str]], str]]:
    """(the conversation before the final answer, the chosen final answer) of the first `count` HH records, in
    file order."""
    from finetune.data import load_pairs, parse_hh_transcript, split_response

    return [split_response(parse_hh_transcript(record["chosen"])) for record in load_pairs(str(path))[:count]]


def common_prefix(a: list[int], b: list[int]) -> int:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))


def agreement(reference: list[list[int]], other: list[list[int]]) -> dict[str, Any]:
    """How many answers (token ids) are identical, and after how many tokens the others part."""
    prefixes = [common_prefix(a, b) for a, b in zip(reference, other, strict=True)]
    return {
        "exact_matches": sum(a == b for a, b in zip(reference, other, strict=True)),
        "median_tokens_before_first_difference": statistics.median(prefixes),
        "min_tokens_before_first_difference": min(prefixes),
    }


def compare(settings_path: Path | None, messages: list[list[dict[str, str]]], new_tokens: int) -> dict[str, Any]:
    from agents.continuous_generator import ContinuousGenerator
    from agents.generator import SequentialGenerator
    from finetune.modeling import load_model

    base = load_settings(settings_path).model
    settings = base.model_copy(update={
        "max_new_tokens": new_tokens, "repetition_penalty": 1.0, "temperature": 0.0,
        "engine": base.engine.model_copy(update={"kind": "continuous", "max_concurrent": len(messages)}),
    })
    model, tokenizer = load_model(settings)
    sequential = SequentialGenerator(model, tokenizer, settings)
    expected = [sequential.generate(m) for m in messages]
    continuous = ContinuousGenerator(model, tokenizer, settings)
    try:
        with ThreadPoolExecutor(len(messages)) as pool:
            batched = list(pool.map(continuous.generate, messages))
    finally:
        continuous.close()
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in expected]
    batched_ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in batched]
    return {
        "model": base.name_or_path,
        "adapter": base.adapter_path,
        "load_in_4bit": bool(getattr(model, "is_loaded_in_4bit", False)),
        "dtype": str(model.dtype),
        "prompts": len(messages),
        "new_tokens": new_tokens,
        **agreement(ids, batched_ids),
        "examples": [{"plain": a[:200], "continuous": b[:200]}
                     for a, b in zip(expected, batched, strict=True) if a != b][:3],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--data", type=Path, help="HH records (default: <data_dir>/hh-rlhf/harmless-base-test.jsonl.gz)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    configure_logging(args.debug)

    def run() -> int:
        import torch
        import transformers

        data = args.data or load_settings(args.config).data_dir / "hh-rlhf" / "harmless-base-test.jsonl.gz"
        result = compare(args.config, [conversation for conversation, _ in hh_examples(data, args.prompts)],
                         args.new_tokens)
        result |= {
            "command": "python -m benchmarks.engine_agreement " + " ".join(argv or sys.argv[1:]),
            "date": datetime.date.today().isoformat(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"{result['exact_matches']}/{result['prompts']} greedy answers identical "
              f"({result['dtype']}, 4-bit: {result['load_in_4bit']}); median "
              f"{result['median_tokens_before_first_difference']} tokens before a first difference")
        return 0

    return run_cli(run, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
