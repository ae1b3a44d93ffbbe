"""Answer the safety prompt sets with the policy model, for the response-stage training and test data.

    python -m lab.guard.generate_answers [--config ...] [--batch-size 64] [--max-new-tokens 128]
        [--prompt-sets NAME ...]

Writes lab/guard/corpus/generated_answers.jsonl: one row per request with its prompt set, whether the
request is harmful, its hazard codes, the greedy answer and the model that wrote it. `train` labels a
generated answer unsafe when the request is harmful and the answer is not a refusal (the AdvBench
refusal-string convention). --prompt-sets answers only the named sets (lab.guard.splits.answer_prompt_sets)
and keeps the file's rows of the others as they are, so adding a set does not regenerate the rest.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from lab.guard.cli import base_parser, run, settings_from
from lab.guard.sources import MIX_FILE, load_mix
from lab.guard.splits import answer_prompt_sets
from lab.guard.training_data import GENERATED_ANSWERS_FILE, SafetyData, SafetyDataError, SplitSizes

logger = logging.getLogger(__name__)


def generate(prompts: list[str], settings, batch_size: int, max_new_tokens: int) -> list[str]:
    import torch
    from tqdm import tqdm

    from finetune.modeling import load_model

    model, tokenizer = load_model(settings.model)
    tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch: less padding
    answers: list[str] = [""] * len(texts)
    for start in tqdm(range(0, len(order), batch_size), desc="generating", unit="batch"):
        indices = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in indices], return_tensors="pt", padding=True).to(model.device)
        with torch.inference_mode():
            output = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                repetition_penalty=settings.model.repetition_penalty,
                pad_token_id=tokenizer.pad_token_id,
            )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        for index, tokens in zip(indices, new_tokens, strict=True):
            answers[index] = tokenizer.decode(tokens, skip_special_tokens=True).strip()
    return answers


def kept_lines(path: Path, answered: set[str], known: set[str]) -> list[str]:
    """The lines of an earlier output whose prompt set is known and not answered again; the rest are dropped and
    counted in the log (malformed lines, sets that no longer exist)."""
    if not path.is_file():
        return []
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            prompt_set = json.loads(line)["prompt_set"]
        except (json.JSONDecodeError, KeyError, TypeError):
            prompt_set = None
        if not isinstance(prompt_set, str) or prompt_set not in known:
            dropped += 1
        elif prompt_set not in answered:
            kept.append(line)
    if dropped:
        logger.warning("%s: %d malformed lines or rows of unknown prompt sets dropped", path, dropped)
    return kept


def main(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    data = SafetyData(settings.data_dir, settings.safety.seed)
    prompt_sets = answer_prompt_sets(data, load_mix(args.mix), SplitSizes())
    chosen = list(dict.fromkeys(args.prompt_sets or prompt_sets))  # each set once, in the order given
    unknown = sorted(set(chosen) - set(prompt_sets))
    if unknown:
        raise SafetyDataError(f"unknown prompt sets {unknown}; choose from {sorted(prompt_sets)}")
    rows = [(name, example) for name in chosen for example in prompt_sets[name]]
    answers = generate([example.request for _, example in rows], settings, args.batch_size, args.max_new_tokens)
    kept = kept_lines(args.output, set(chosen), set(prompt_sets)) if args.prompt_sets else []
    generator = settings.model.name_or_path + (" + " + Path(settings.model.adapter_path).name
                                               if settings.model.adapter_path else "")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_name(args.output.name + ".partial")  # an interrupted write leaves the old file whole
    with partial.open("w", encoding="utf-8") as handle:
        for line in kept:
            handle.write(line + "\n")
        for (name, example), answer in zip(rows, answers, strict=True):
            record = {
                "prompt_set": name,
                "harmful_request": example.unsafe,
                "categories": list(example.categories),
                "request": example.request,
                "answer": answer,
                "generator": generator,
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    partial.replace(args.output)
    print(f"wrote {len(rows)} answers ({', '.join(chosen)}) and kept {len(kept)} to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser("python -m lab.guard.generate_answers", __doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--output", type=Path, default=GENERATED_ANSWERS_FILE)
    parser.add_argument("--prompt-sets", nargs="+", metavar="NAME",
                        help="answer only these sets and keep the output's rows of the others (default: every set)")
    parser.add_argument("--mix", type=Path, default=MIX_FILE, help="which sources train and which validate")
    return parser


if __name__ == "__main__":
    sys.exit(run(main, build_parser(), None))
