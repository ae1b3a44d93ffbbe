"""Answer the safety prompt sets with the policy model, for the response-stage training and test data.

    python -m lab.guard.generate_answers [--config ...] [--batch-size 64] [--max-new-tokens 128]

Writes lab/guard/corpus/generated_answers.jsonl: one row per request with its prompt set, whether the
request is harmful, its hazard codes, and the greedy answer. `train` labels a generated answer unsafe when
the request is harmful and the answer is not a refusal (the AdvBench refusal-string convention).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lab.guard.cli import base_parser, run, settings_from
from lab.guard.training_data import GENERATED_ANSWERS_FILE, SafetyData, SplitSizes


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


def main(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    data = SafetyData(settings.data_dir, settings.safety.seed)
    prompt_sets = data.answer_prompt_sets(SplitSizes().answers_per_benign_set)
    rows = [(name, example) for name, examples in prompt_sets.items() for example in examples]
    answers = generate([example.request for _, example in rows], settings, args.batch_size, args.max_new_tokens)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8") as handle:
        for (name, example), answer in zip(rows, answers, strict=True):
            record = {
                "prompt_set": name,
                "harmful_request": example.unsafe,
                "categories": list(example.categories),
                "request": example.request,
                "answer": answer,
                "generator": settings.model.name_or_path,
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} answers to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser("python -m lab.guard.generate_answers", __doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--output", type=Path, default=GENERATED_ANSWERS_FILE)
    return parser


if __name__ == "__main__":
    sys.exit(run(main, build_parser(), None))
