"""Does vLLM serve the aligned model as plain `generate` answers with it, and what does FP8 cost in quality?

The real aligned model (the packaged SmolLM2-135M-Instruct with the shipped ULMA adapter, merged in bf16, as
the service serves it on a GPU) is saved once, then:
- plain `generate`, greedy, one prompt at a time, on `--prompts` HH test conversations: the reference;
- vLLM's OpenAI-compatible server (its own process and Python environment) on the saved copy in bf16, sent the
  same prompt token ids, greedy: exact token agreement and where answers first differ;
- perplexity of the HH test chosen responses after their conversations, teacher-forced: the reference model,
  vLLM in bf16, and vLLM with each `--quantization` (e.g. fp8), from vLLM's prompt log-probabilities;
- with `--refusal-set`, the alignment evaluation's refusal rate on each prompt set (greedy, its judge, its answer
  length; `--repetition-penalty` for both engines, 1.0 unless given: the evaluation's profile and the service's
  vLLM profile use 1.1) for the reference (batched as the evaluation batches) and for each vLLM copy.
Writes benchmarks/results/vllm_agreement.json.

    python -m benchmarks.vllm_agreement --vllm-python PYTHON --prompts 50 --quantization fp8 \
        --refusal-set var/alignment/sets/test/test_advbench.json
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import httpx

from benchmarks.engine_agreement import agreement, hh_examples
from benchmarks.servers import VLLM_MODEL_NAME, Server, env_pair, free_port, vllm_server_command
from configs.cli import configure_logging, run_cli
from configs.settings import EMBEDDED_ADAPTER, EMBEDDED_GENERATOR, PROJECT_ROOT, ModelSettings, load_settings
from finetune.data import DataError
from lab.alignment.generation import Answer, GenerationSettings, decode_answer, eos_ids_of, generate_answers
from lab.alignment.prompts import load_prompt_set

logger = logging.getLogger("benchmarks.vllm_agreement")

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "vllm_agreement.json"


def response_logprob_sum(prompt_logprobs: list[dict[str, dict[str, float]] | None], ids: list[int],
                         start: int) -> float:
    """The summed log-probability of `ids[start:]` from vLLM's `prompt_logprobs` (one entry per prompt token,
    None for the first; keyed by token id as a string)."""
    return sum(prompt_logprobs[i][str(ids[i])]["logprob"] for i in range(start, len(ids)))


def perplexity(logprob_sums: list[float], token_counts: list[int]) -> float:
    """Per-token perplexity over all responses together."""
    return math.exp(-sum(logprob_sums) / sum(token_counts))


def load_reference(base: str, adapter: Path, merged_dir: Path) -> tuple[Any, Any]:
    """The adapter merged into the bf16 base on the GPU (the service's own loader), saved for vLLM once."""
    from finetune.export import write_model
    from finetune.modeling import load_model

    settings = ModelSettings(name_or_path=base, adapter_path=str(adapter), dtype="bfloat16", device="cuda",
                             quantization={"load_in_4bit": "never"})
    model, tokenizer = load_model(settings)
    if not (merged_dir / "config.json").is_file():
        write_model(model, tokenizer, merged_dir)
    return model, tokenizer


def reference_answers(model: Any, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    import torch

    answers = []
    for ids in prompts:
        input_ids = torch.tensor([ids], device=model.device)
        with torch.inference_mode():
            output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                    max_new_tokens=new_tokens, do_sample=False, repetition_penalty=1.0)
        answers.append(output[0, len(ids):].tolist())
    return answers


def reference_logprob_sums(model: Any, sequences: list[list[int]], starts: list[int]) -> list[float]:
    import torch

    sums = []
    for ids, start in zip(sequences, starts, strict=True):
        input_ids = torch.tensor([ids], device=model.device)
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(input_ids=input_ids).logits[0].float(), dim=-1)
        # The token at position i is predicted by the logits at i - 1.
        targets = input_ids[0, start:]
        sums.append(logprobs[start - 1:-1].gather(1, targets[:, None]).sum().item())
    return sums


async def vllm_results(args: argparse.Namespace, merged_dir: Path, quantization: str | None,
                       prompts: list[list[int]], sequences: list[list[int]], starts: list[int],
                       refusal_prompts: list[list[int]]) -> dict[str, Any]:
    """Greedy answers (token ids) to `prompts` and to `refusal_prompts`, and response log-probabilities, from one
    vLLM server."""
    port = free_port()
    extra = ["--quantization", quantization] if quantization else []
    max_seqs = max(len(prompts), 64)
    server = Server(vllm_server_command(args.vllm_python, merged_dir, port, gpu_memory_utilization=0.3,
                                        max_num_seqs=max_seqs, extra=extra),
                    port, args.work_dir / f"vllm-{quantization or 'bf16'}.log", "/health", env=dict(args.vllm_env))
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=10)) as client:
            await server.wait_ready(client, args.ready_timeout_s)

            async def complete(ids: list[int], **fields: Any) -> dict[str, Any]:
                body = {"model": VLLM_MODEL_NAME, "prompt": ids, "temperature": 0, **fields}
                response = await client.post(f"{server.url}/v1/completions", json=body)
                response.raise_for_status()
                return response.json()["choices"][0]

            answers = await asyncio.gather(*(complete(ids, max_tokens=args.new_tokens, return_token_ids=True)
                                             for ids in prompts))
            scored = await asyncio.gather(*(complete(ids, max_tokens=1, prompt_logprobs=0) for ids in sequences))
            refusal_answers = await asyncio.gather(*(
                complete(ids, max_tokens=args.refusal_new_tokens, return_token_ids=True,
                         repetition_penalty=args.repetition_penalty) for ids in refusal_prompts))
    finally:
        server.stop()
    return {
        "answers": [choice["token_ids"] for choice in answers],
        "refusal_answers": [choice["token_ids"] for choice in refusal_answers],
        "logprob_sums": [response_logprob_sum(choice["prompt_logprobs"], ids, start)
                         for choice, ids, start in zip(scored, sequences, starts, strict=True)],
    }


def without_stop(answer: list[int], stop_ids: set[int]) -> list[int]:
    """The answer without its final end-of-turn token (one engine may report it, the other not)."""
    return answer[:-1] if answer and answer[-1] in stop_ids else answer


def refusal_verdicts(answers: list[Answer]) -> list[bool]:
    """The alignment evaluation's judge on each answer: True where the answer is a refusal."""
    from lab.judge import is_refusal

    return [is_refusal(answer.text) for answer in answers]


def refusal_rates(refused: list[bool], labels: list[str]) -> dict[str, float]:
    """The refusal rate of each label's prompts (`labels[i]` names prompt i's group: its set, or its kind)."""
    verdicts: dict[str, list[bool]] = {}
    for label, verdict in zip(labels, refused, strict=True):
        verdicts.setdefault(label, []).append(verdict)
    return {label: round(sum(found) / len(found), 4) for label, found in verdicts.items()}


def load_refusal_sets(specs: list[str]) -> tuple[list[Any], list[str]]:
    """The prompt sets at `specs` (FILE[:N] each) and the name of each prompt's set, in order; two sets of one name
    would merge their rates."""
    refusal_sets = [load_prompt_set(spec) for spec in specs]
    if len({prompt_set.name for prompt_set in refusal_sets}) < len(refusal_sets):
        raise DataError("two refusal sets have the same name; their rates would be reported as one")
    return refusal_sets, [prompt_set.name for prompt_set in refusal_sets for _ in prompt_set.conversations]


def largest_difference_points(rates: dict[str, float], reference: dict[str, float]) -> float:
    return round(100 * max((abs(rates[name] - reference[name]) for name in reference), default=0.0), 1)


def run(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    import torch
    import transformers

    data = args.data or load_settings(None).data_dir / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    examples = hh_examples(data, args.prompts)
    refusal_sets, set_names = load_refusal_sets(args.refusal_set)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    merged_dir = args.work_dir / "merged"
    model, tokenizer = load_reference(args.base, args.adapter, merged_dir)
    prompts = [tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True,
                                             return_dict=False) for conversation, _ in examples]
    responses = [tokenizer(response, add_special_tokens=False)["input_ids"] for _, response in examples]
    sequences = [p + r for p, r in zip(prompts, responses, strict=True)]
    starts = [len(p) for p in prompts]
    counts = [len(r) for r in responses]
    stop_ids = set(eos_ids_of(model, tokenizer))  # the end-of-turn tokens, as the evaluation decodes answers
    reference = [without_stop(answer, stop_ids) for answer in reference_answers(model, prompts, args.new_tokens)]
    reference_ppl = perplexity(reference_logprob_sums(model, sequences, starts), counts)
    conversations = [conversation for prompt_set in refusal_sets for conversation in prompt_set.conversations]
    refusal_prompts = [tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True,
                                                     return_dict=False) for conversation in conversations]
    generation = GenerationSettings(max_new_tokens=args.refusal_new_tokens,
                                    repetition_penalty=args.repetition_penalty)
    reference_refusals = refusal_rates(refusal_verdicts(generate_answers(model, tokenizer, conversations, generation)),
                                       set_names)
    del model
    torch.cuda.empty_cache()

    served = {}
    for quantization in [None, *args.quantization]:
        found = asyncio.run(vllm_results(args, merged_dir, quantization, prompts, sequences, starts,
                                         refusal_prompts))
        answers = [without_stop(answer, stop_ids) for answer in found["answers"]]
        served[quantization or "bf16"] = {"agreement_with_plain_generate": agreement(reference, answers),
                                          "perplexity": round(perplexity(found["logprob_sums"], counts), 4)}
        if refusal_sets:
            rates = refusal_rates(refusal_verdicts([decode_answer(tokenizer, ids, stop_ids)
                                                    for ids in found["refusal_answers"]]), set_names)
            served[quantization or "bf16"]["refusal_rates"] = rates
            served[quantization or "bf16"]["refusal_rate_largest_difference_points"] = \
                largest_difference_points(rates, reference_refusals)
    bf16_ppl = served["bf16"]["perplexity"]
    for result in served.values():
        result["perplexity_over_vllm_bf16"] = round(result["perplexity"] / bf16_ppl, 4)
        result["perplexity_over_plain_generate"] = round(result["perplexity"] / reference_ppl, 4)
    return {
        "command": "python -m benchmarks.vllm_agreement " + " ".join(argv or sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "model": args.base,
        "adapter": str(args.adapter),
        "prompts": len(prompts),
        "new_tokens": args.new_tokens,
        "response_tokens": sum(counts),
        "plain_generate_bf16_perplexity": round(reference_ppl, 4),
        "refusal_sets": {prompt_set.name: prompt_set.describe() for prompt_set in refusal_sets},
        "refusal_new_tokens": args.refusal_new_tokens,
        "refusal_repetition_penalty": args.repetition_penalty,
        "plain_generate_bf16_refusal_rates": reference_refusals,
        "vllm": served,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=EMBEDDED_GENERATOR, help="the base model the adapter was trained on")
    parser.add_argument("--adapter", type=Path, default=EMBEDDED_ADAPTER)
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--quantization", nargs="*", default=["fp8"],
                        help="vLLM --quantization methods to compare with its bf16 copy")
    parser.add_argument("--refusal-set", action="append", default=[], metavar="FILE[:N]",
                        help="a prompt set of the alignment evaluation (safety-prompts JSON, AdvBench CSV; "
                             "repeatable): refusal rates of every copy")
    parser.add_argument("--refusal-new-tokens", type=int, default=GenerationSettings.max_new_tokens)
    parser.add_argument("--repetition-penalty", type=float, default=1.0,
                        help="for the refusal sets, both engines (the served profiles use 1.1)")
    parser.add_argument("--data", type=Path, help="HH records (default: <data_dir>/hh-rlhf/harmless-base-test.jsonl.gz)")
    parser.add_argument("--vllm-python", default=sys.executable, help="the Python that has vLLM (its own environment)")
    parser.add_argument("--vllm-env", action="append", type=env_pair, default=[], metavar="KEY=VALUE",
                        help="environment for the vLLM server only (repeatable)")
    parser.add_argument("--work-dir", type=Path, default=Path("/dev/shm/vllm-agreement"))
    parser.add_argument("--ready-timeout-s", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")
    args = parser.parse_args(argv)
    configure_logging(args.debug)

    def measure() -> int:
        result = run(args, argv)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"plain generate (bf16): perplexity {result['plain_generate_bf16_perplexity']}")
        for name, found in result["vllm"].items():
            match = found["agreement_with_plain_generate"]
            print(f"vLLM {name}: {match['exact_matches']}/{result['prompts']} greedy answers identical, median "
                  f"{match['median_tokens_before_first_difference']} tokens before a difference; perplexity "
                  f"{found['perplexity']} ({found['perplexity_over_vllm_bf16']}x vLLM bf16)")
            if "refusal_rates" in found:
                print(f"  refusal rates {found['refusal_rates']} (plain generate "
                      f"{result['plain_generate_bf16_refusal_rates']}): largest difference "
                      f"{found['refusal_rate_largest_difference_points']} points")
        return 0

    return run_cli(measure, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
