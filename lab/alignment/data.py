"""`python -m lab.alignment.data`: build the point-wise ULMA training file from training splits only.

Three sources, written into one JSONL file that `finetune.data.pointwise_rows` reads:

(a) HH harmless pairs minus a seeded held-out split (`finetune.data.split_holdout`): the pairs as they are
    (chosen -> score 1, rejected -> score 0). The held-out pairs go to their own file for the evaluator.
(b) harmful training prompts: a written refusal (configs/finetune/refusal_templates.yaml) with score 1, and
    the base model's own answer with score 0, unless the refusal judge says the base already refused; each
    written `--harmful-repeat` times, the answer `--harmful-negative-repeat` times where that is given.
(c) a seeded sample of harmless training prompts with the base model's own answers as positives (score 1),
    minus those the judge calls refusals, so training to refuse does not teach refusing everything. Answers
    cut off by max_new_tokens are trimmed to their last full sentence (a positive teaches where to stop).
    With `--harmless-refusal-negatives N`, the first N kept prompts also get a written refusal as a negative
    (score 0): the same refusal texts that (b) rewards on harmful prompts are pushed down on benign ones, so
    the model learns that the prompt, not the refusal's wording, decides (ULMA's point-wise negatives need no
    pairing; here they share the prompt with a positive).
(b') with `--harmful-extra FILE` (repeatable; harmful train splits of `python -m lab.alignment.sets`, other sources
    of harmful requests than harmful_train): treated as (b), so refusing is learned from more than one source's
    phrasing.
(d) with `--lookalikes FILE` (repeatable; the train split of `python -m lab.alignment.sets`): safe prompts that
    sound harmful ("How can I kill a Python process?"). The base model's answer is a positive and a written
    refusal a negative, each written `--lookalike-repeat` times: the boundary is taught from both sides, next
    to the harmful prompts whose refusals are positives.

Prompts that occur in the evaluation sets (`--exclude`) are never used. Then, before anything else, a seeded
validation split of the harmful and harmless training prompts (`--val-harmful`, `--val-harmless`; 0 disables)
is carved out of each whole file (its `:N` cap and the sampling do not move it) and never trained on; it is
written as `harmful_valsplit.json` and `harmless_valsplit.json` (the input's JSON list format, which
`python -m lab.alignment.evaluate --harmful/--benign` and `python -m lab.alignment.sweep` read) for tuning
hyperparameters without touching the test sets. Next to `train.jsonl` and `heldout_pairs.jsonl` the builder
writes `manifest.json`: the inputs' sha256, seed, split sizes, counts of every kept and dropped row, the
generation settings, fingerprints of both outputs and the validation files' sizes and sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from configs.cli import add_common_arguments, configure_logging, run_cli
from configs.settings import CONFIG_DIR, PROJECT_ROOT, SHARED_DATA_DIR, ConfigError, load_settings
from finetune.data import DataError, load_pairs, records_fingerprint, split_holdout
from lab.alignment.prompts import (
    last_user_text,
    load_prompt_set,
    normalise_prompt,
    parse_spec,
    read_json_prompt_records,
    record_prompt,
)
from lab.hashing import file_sha256
from lab.judge import RefusalJudge

if TYPE_CHECKING:
    from configs.settings import ModelSettings
    from lab.alignment.generation import Answer, GenerationSettings

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATES = CONFIG_DIR / "finetune" / "refusal_templates.yaml"
DEFAULT_OUT = PROJECT_ROOT / "var" / "alignment"
VALSPLIT_FILES = {"harmful": "harmful_valsplit.json", "harmless": "harmless_valsplit.json"}
# The last sentence end: punctuation after a word (not a list number such as "3.") before a space or the end.
_LAST_SENTENCE_END = re.compile(r"(?s)^(.*[^\d\s][.!?)\]\"'])(?=\s|$)")

Message = dict[str, str]


# ---------------------------------------------------------------- written refusals


@dataclass(frozen=True)
class RefusalTemplates:
    """Refusal texts per category, chosen by keywords in the prompt; `general` catches the rest."""

    categories: dict[str, dict[str, list[str]]]

    @classmethod
    def load(cls, path: Path = DEFAULT_TEMPLATES) -> RefusalTemplates:
        if not path.is_file():
            raise ConfigError(f"refusal templates not found: {path}")
        categories = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("categories") or {}
        if "general" not in categories or any(not c.get("refusals") for c in categories.values()):
            raise ConfigError(f"{path}: every category needs `refusals`, and a `general` category must exist")
        return cls(categories)

    def category(self, prompt: str) -> str:
        """The first category with a keyword at the start of a word of the prompt ("hack" finds "hacking")."""
        return next(
            (
                name
                for name, c in self.categories.items()
                if any(
                    re.search(rf"\b{re.escape(k)}", prompt, re.IGNORECASE) for k in c.get("keywords") or []
                )
            ),
            "general",
        )

    def refusal(self, prompt: str, seed: int) -> str:
        """The same prompt and seed always give the same text."""
        return random.Random(f"{seed}:{prompt}").choice(self.categories[self.category(prompt)]["refusals"])


# ---------------------------------------------------------------- helpers


def trim_to_sentence(text: str) -> str | None:
    """An answer cut off mid-sentence, up to its last complete sentence; None when there is none."""
    match = _LAST_SENTENCE_END.match(text.strip())
    return match.group(1).strip() if match else None


def helpful_text(prompt: str, answer: Answer, judge: RefusalJudge, counts: dict[str, int]) -> str | None:
    """The base model's answer as a helpful positive, cut to its last full sentence if it ran out of tokens;
    None when the judge calls it a refusal or no full sentence is left (each counted in `counts`)."""
    if judge.is_refusal(answer.text, prompt):
        counts["dropped_refusal"] += 1
        return None
    text = answer.text if answer.finished else trim_to_sentence(answer.text)
    if not text:
        counts["dropped_no_full_sentence"] += 1
        return None
    counts["kept"] += 1
    return text


def carve_validation(path: Path, n: int, exclude: set[str], seed: int, kind: str) -> list[dict[str, Any]]:
    """A seeded sample of `n` distinct prompts of a safety-prompts JSON file, none in `exclude`, as
    `{"instruction", "category"}` records. Drawn from the whole file, so it does not move with `:N` caps."""
    if path.suffix != ".json":
        raise ConfigError(f"--val-{kind} needs a .json prompt file, not {path.name}; pass --val-{kind} 0")
    pool: dict[str, dict[str, Any]] = {}
    for record in read_json_prompt_records(path):
        text = record_prompt(record)
        if not isinstance(text, str) or not text.strip() or normalise_prompt(text) in exclude:
            continue
        category = record.get("category") if isinstance(record, dict) else None
        pool.setdefault(normalise_prompt(text), {"instruction": text.strip(), "category": category})
    if n > len(pool):
        raise ConfigError(f"--val-{kind} {n} is more than the {len(pool)} usable prompts in {path}")
    # Its own random stream: the harmless sample below keeps using Random(seed) as before.
    return random.Random(f"{seed}:val-{kind}").sample(list(pool.values()), n)


def valsplit_text(records: list[dict[str, Any]]) -> str:
    """The exact file content, so the manifest's sha256 is that of the written file."""
    return json.dumps(records, indent=2, ensure_ascii=False) + "\n"


def pointwise_record(prompt: str, response: str, score: float, source: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return {"messages": messages, "score": score, "source": source}


@dataclass
class BuildOptions:
    hh: Path
    harmful_train: str
    harmless_train: Path
    out_dir: Path
    harmless_n: int = 1500
    holdout_fraction: float = 0.1
    seed: int = 0
    exclude: list[str] = field(default_factory=list)
    hh_limit: int | None = None
    # The 260 harmful prompts are few beside thousands of HH and benign rows; repeating their rows is what
    # moved an earlier adapter from refusing 46% to 96% of held-out harmful prompts.
    harmful_repeat: int = 1
    # The negatives (the base's compliance) may be written fewer times than the refusals: pushing fluent
    # answers down is what cost held-out HH perplexity when both were doubled (sweep_refusals_twice.json).
    harmful_negative_repeat: int | None = None
    harmless_refusal_negatives: int = 0
    harmful_extra: list[str] = field(default_factory=list)
    lookalikes: list[str] = field(default_factory=list)
    lookalike_repeat: int = 1
    val_harmful: int = 50
    val_harmless: int = 400
    templates: Path = DEFAULT_TEMPLATES
    show_progress: bool = False

    @property
    def harmful_negatives_per_prompt(self) -> int:
        if self.harmful_negative_repeat is None:
            return self.harmful_repeat
        return self.harmful_negative_repeat

    def input_files(self) -> list[Path]:
        lookalikes = [Path(parse_spec(spec)[0]) for spec in self.lookalikes]
        return [
            self.hh,
            Path(parse_spec(self.harmful_train)[0]),
            *(Path(parse_spec(spec)[0]) for spec in self.harmful_extra),
            self.harmless_train,
            *lookalikes,
            self.templates,
        ]

    def check(self) -> None:
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError("--holdout-fraction must be between 0 and 1 (exclusive)")
        if self.harmless_n < 0:
            raise ConfigError("--harmless-n must be 0 or more")
        if self.harmful_repeat < 1:
            raise ConfigError("--harmful-repeat must be 1 or more")
        if self.harmful_negative_repeat is not None and self.harmful_negative_repeat < 0:
            raise ConfigError("--harmful-negative-repeat must be 0 or more")
        if self.lookalike_repeat < 1:
            raise ConfigError("--lookalike-repeat must be 1 or more")
        if self.harmless_refusal_negatives < 0:
            raise ConfigError("--harmless-refusal-negatives must be 0 or more")
        if self.val_harmful < 0 or self.val_harmless < 0:
            raise ConfigError("--val-harmful and --val-harmless must be 0 or more")
        for path in self.input_files():
            if not path.is_file():
                raise DataError(f"input not found: {path}")


@dataclass
class BuildResult:
    train: list[dict[str, Any]]
    heldout: list[dict[str, Any]]
    manifest: dict[str, Any]
    validation: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "harmful"/"harmless"


# ---------------------------------------------------------------- the build


def build_alignment_data(
    model_settings: ModelSettings, generation: GenerationSettings, options: BuildOptions
) -> BuildResult:
    options.check()
    started = time.perf_counter()
    templates = RefusalTemplates.load(options.templates)
    judge = RefusalJudge()
    excluded = {
        normalise_prompt(last_user_text(c))
        for spec in options.exclude
        for c in load_prompt_set(spec).conversations
    }
    counts: dict[str, Any] = {}

    # (a) HH pairs: the held-out split is taken first, over all records, so it never depends on --hh-limit.
    hh_records = load_pairs(str(options.hh))
    hh_train, heldout = split_holdout(hh_records, options.holdout_fraction, options.seed)
    hh_train = hh_train[: options.hh_limit] if options.hh_limit else hh_train
    train: list[dict[str, Any]] = [{**record, "source": "hh-rlhf"} for record in hh_train]
    counts["hh"] = {"records": len(hh_records), "train_pairs": len(hh_train), "heldout_pairs": len(heldout)}

    # The validation prompts first, then (b), (c) without them: prompts, then the base model's answers to all
    # of them in one batched pass.
    validation = {
        "harmful": carve_validation(
            Path(parse_spec(options.harmful_train)[0]), options.val_harmful, excluded, options.seed, "harmful"
        ),
        "harmless": carve_validation(
            options.harmless_train, options.val_harmless, excluded, options.seed, "harmless"
        ),
    }
    held_for_validation = {normalise_prompt(r["instruction"]) for rs in validation.values() for r in rs}
    harmful_set = load_prompt_set(options.harmful_train, excluded | held_for_validation)
    harmless_set = load_prompt_set(str(options.harmless_train), excluded | held_for_validation)
    harmful = [last_user_text(c) for c in harmful_set.conversations]
    harmful_main = len(harmful)
    harmful = list(
        dict.fromkeys(
            harmful
            + [
                last_user_text(c)
                for spec in options.harmful_extra
                for c in load_prompt_set(spec, excluded | held_for_validation).conversations
            ]
        )
    )
    harmless_pool = [last_user_text(c) for c in harmless_set.conversations]
    harmful_val_dropped = _count_in(Path(parse_spec(options.harmful_train)[0]), held_for_validation)
    harmless_val_dropped = _count_in(options.harmless_train, held_for_validation)
    harmless = random.Random(options.seed).sample(harmless_pool, min(options.harmless_n, len(harmless_pool)))
    lookalikes = list(
        dict.fromkeys(
            last_user_text(c)
            for spec in options.lookalikes
            for c in load_prompt_set(spec, excluded | held_for_validation).conversations
        )
    )
    answers = _base_answers(
        model_settings, generation, harmful + harmless + lookalikes, options.show_progress
    )
    lookalike_answers = answers[len(harmful) + len(harmless) :]
    answers = answers[: len(harmful) + len(harmless)]

    harmful_counts = {
        "prompts": len(harmful),
        "extra_source_prompts": len(harmful) - harmful_main,
        "dropped_eval_overlap": harmful_set.dropped_training_overlap - harmful_val_dropped,
        "held_for_validation": harmful_val_dropped,
        "refusals_written": 0,
        "base_answers_kept": 0,
        "base_already_refused": 0,
    }
    for prompt, answer in zip(harmful, answers[: len(harmful)], strict=True):
        refusal = pointwise_record(prompt, templates.refusal(prompt, options.seed), 1.0, "harmful:refusal")
        train.extend([refusal] * options.harmful_repeat)
        harmful_counts["refusals_written"] += 1
        if judge.is_refusal(answer.text, prompt):
            harmful_counts["base_already_refused"] += 1
            continue
        negative = pointwise_record(prompt, answer.text, 0.0, "harmful:base_answer")
        train.extend([negative] * options.harmful_negatives_per_prompt)
        harmful_counts["base_answers_kept"] += bool(options.harmful_negatives_per_prompt)
    counts["harmful"] = harmful_counts

    harmless_counts = {
        "pool": len(harmless_pool),
        "dropped_eval_overlap": harmless_set.dropped_training_overlap - harmless_val_dropped,
        "held_for_validation": harmless_val_dropped,
        "sampled": len(harmless),
        "kept": 0,
        "trimmed": 0,
        "dropped_refusal": 0,
        "dropped_no_full_sentence": 0,
        "refusal_negatives": 0,
    }
    for prompt, answer in zip(harmless, answers[len(harmful) :], strict=True):
        text = helpful_text(prompt, answer, judge, harmless_counts)
        if text is None:
            continue
        harmless_counts["trimmed"] += not answer.finished
        train.append(pointwise_record(prompt, text, 1.0, "harmless:base_answer"))
        if harmless_counts["refusal_negatives"] < options.harmless_refusal_negatives:
            refusal = templates.refusal(prompt, options.seed)
            train.append(pointwise_record(prompt, refusal, 0.0, "harmless:refusal"))
            harmless_counts["refusal_negatives"] += 1
    counts["harmless"] = harmless_counts
    counts["lookalikes"] = add_lookalikes(train, lookalikes, lookalike_answers, templates, judge, options)
    counts["excluded_eval_prompts"] = len(excluded)

    manifest = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "inputs": {str(path.resolve()): file_sha256(path) for path in options.input_files()},
        "exclude": options.exclude,
        "seed": options.seed,
        "holdout_fraction": options.holdout_fraction,
        "harmless_n": options.harmless_n,
        "hh_limit": options.hh_limit,
        "harmful_repeat": options.harmful_repeat,
        "harmful_negative_repeat": options.harmful_negatives_per_prompt,
        "harmless_refusal_negatives": options.harmless_refusal_negatives,
        "harmful_extra": options.harmful_extra,
        "lookalikes": options.lookalikes,
        "lookalike_repeat": options.lookalike_repeat,
        "validation": {
            kind: {
                "file": VALSPLIT_FILES[kind],
                "size": len(records),
                "sha256": hashlib.sha256(valsplit_text(records).encode("utf-8")).hexdigest(),
            }
            for kind, records in validation.items()
            if records
        },
        "base_model": model_settings.name_or_path,
        "generation": generation.to_dict(),
        "judge": judge.name,
        "counts": counts,
        "train_records": len(train),
        "train_fingerprint": records_fingerprint(train),
        "heldout_fingerprint": records_fingerprint(heldout),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return BuildResult(train, heldout, manifest, validation)


def add_lookalikes(
    train: list[dict[str, Any]],
    prompts: list[str],
    answers: list[Answer],
    templates: RefusalTemplates,
    judge: RefusalJudge,
    options: BuildOptions,
) -> dict[str, int]:
    """(d): the base model's helpful answer as a positive and a written refusal as a negative per prompt; a
    prompt the base itself refused, or whose answer has no full sentence, gives no row at all."""
    counts = {"prompts": len(prompts), "kept": 0, "dropped_refusal": 0, "dropped_no_full_sentence": 0}
    for prompt, answer in zip(prompts, answers, strict=True):
        text = helpful_text(prompt, answer, judge, counts)
        if text is None:
            continue
        refusal = templates.refusal(prompt, options.seed)
        train.extend(
            [pointwise_record(prompt, text, 1.0, "lookalike:base_answer")] * options.lookalike_repeat
        )
        train.extend([pointwise_record(prompt, refusal, 0.0, "lookalike:refusal")] * options.lookalike_repeat)
    return counts


def _count_in(path: Path, prompts: set[str]) -> int:
    """How many prompts of a file (every format `load_prompt_set` reads) are in `prompts`."""
    if not prompts:
        return 0
    return sum(
        normalise_prompt(last_user_text(c)) in prompts for c in load_prompt_set(str(path)).conversations
    )


def _base_answers(
    model_settings: ModelSettings, generation: GenerationSettings, prompts: list[str], progress: bool
) -> list[Answer]:
    from finetune.modeling import load_model
    from lab.alignment.generation import generate_answers

    if not prompts:
        return []
    model, tokenizer = load_model(model_settings.model_copy(update={"adapter_path": None}))
    conversations = [[{"role": "user", "content": prompt}] for prompt in prompts]
    return generate_answers(
        model, tokenizer, conversations, generation, desc="base answers", show_progress=progress
    )


def write_build(result: BuildResult, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, records in (("train.jsonl", result.train), ("heldout_pairs.jsonl", result.heldout)):
        with (out_dir / name).open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    for kind, name in VALSPLIT_FILES.items():
        records = result.validation.get(kind)
        if records:
            (out_dir / name).write_text(valsplit_text(records), encoding="utf-8")
        else:  # a rebuild without the split must not leave an earlier one that no longer matches the data
            (out_dir / name).unlink(missing_ok=True)
    (out_dir / "manifest.json").write_text(json.dumps(result.manifest, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    safety_prompts = SHARED_DATA_DIR / "safety-prompts"
    parser = argparse.ArgumentParser(
        prog="python -m lab.alignment.data",
        description="Build the point-wise alignment training file (HH pairs + written refusals + the base "
        "model's own answers) from training splits only, and the held-out HH pairs for evaluation.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_arguments(parser, config_help="YAML settings profile (model section)")
    parser.add_argument("--base", help="base model that answers the prompts (model.name_or_path)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="model.device")
    parser.add_argument(
        "--hh", type=Path, default=SHARED_DATA_DIR / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    )
    parser.add_argument(
        "--harmful-train", default=str(safety_prompts / "harmful_train.json"), metavar="FILE[:N]"
    )
    parser.add_argument("--harmless-train", type=Path, default=safety_prompts / "harmless_train.json")
    parser.add_argument("--harmless-n", type=int, default=1500, help="harmless prompts sampled (seeded)")
    parser.add_argument("--holdout-fraction", type=float, default=0.1, help="share of HH pairs held out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--exclude",
        action="append",
        metavar="FILE",
        help="evaluation prompt sets never to train on "
        "(repeatable; default: harmful_val.json and harmless_val.json)",
    )
    parser.add_argument("--hh-limit", type=int, help="at most N HH training pairs (quick runs)")
    parser.add_argument(
        "--harmful-repeat",
        type=int,
        default=1,
        help="write each harmful prompt's rows N times (oversampling)",
    )
    parser.add_argument(
        "--harmful-negative-repeat",
        type=int,
        help="write each harmful prompt's negative (the base's compliance) N times instead "
        "(default: --harmful-repeat; 0 leaves the negatives out)",
    )
    parser.add_argument(
        "--harmless-refusal-negatives",
        type=int,
        default=0,
        help="the first N kept harmless prompts also get a written refusal with score 0 (against over-refusal)",
    )
    parser.add_argument(
        "--harmful-extra",
        action="append",
        default=[],
        metavar="FILE[:N]",
        help="more harmful training prompts from other sources (repeatable): treated as --harmful-train's",
    )
    parser.add_argument(
        "--lookalikes",
        action="append",
        default=[],
        metavar="FILE[:N]",
        help="safe prompts that sound harmful (repeatable): base answer positive, written refusal negative",
    )
    parser.add_argument(
        "--lookalike-repeat", type=int, default=1, help="write each look-alike's rows N times"
    )
    parser.add_argument(
        "--val-harmful", type=int, default=50, help="harmful_train prompts held out for validation (0: none)"
    )
    parser.add_argument(
        "--val-harmless",
        type=int,
        default=400,
        help="harmless_train prompts held out for validation (0: none)",
    )
    parser.add_argument("--templates", type=Path, default=DEFAULT_TEMPLATES, help="written refusals")
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.debug)
    return run_cli(lambda: build(args), debug=args.debug)


def build(args: argparse.Namespace) -> int:
    from lab.alignment.generation import (
        GenerationSettings,
    )  # torch loads only now: --help stays instant

    safety_prompts = SHARED_DATA_DIR / "safety-prompts"
    settings = load_settings(args.config, {"model.name_or_path": args.base, "model.device": args.device})
    generation = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        repetition_penalty=settings.model.repetition_penalty,
        max_input_tokens=settings.model.max_input_tokens,
    )
    options = BuildOptions(
        hh=args.hh,
        harmful_train=args.harmful_train,
        harmless_train=args.harmless_train,
        out_dir=args.out,
        harmless_n=args.harmless_n,
        holdout_fraction=args.holdout_fraction,
        seed=args.seed,
        exclude=args.exclude
        or [str(safety_prompts / "harmful_val.json"), str(safety_prompts / "harmless_val.json")],
        hh_limit=args.hh_limit,
        harmful_repeat=args.harmful_repeat,
        harmful_negative_repeat=args.harmful_negative_repeat,
        harmless_refusal_negatives=args.harmless_refusal_negatives,
        harmful_extra=args.harmful_extra,
        lookalikes=args.lookalikes,
        lookalike_repeat=args.lookalike_repeat,
        val_harmful=args.val_harmful,
        val_harmless=args.val_harmless,
        templates=args.templates,
        show_progress=not args.no_progress,
    )
    result = build_alignment_data(settings.model, generation, options)
    write_build(result, args.out)
    print(json.dumps(result.manifest["counts"], indent=2))
    print(
        f"wrote {len(result.train)} training records and {len(result.heldout)} held-out pairs to {args.out}"
    )
    for kind, entry in result.manifest["validation"].items():
        print(f"validation split: {entry['size']} {kind} prompts in {args.out / entry['file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
