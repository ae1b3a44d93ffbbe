"""`python -m lab.agent.evaluate`: the straight-line graph vs. the agentic one, on one question set, in one run.

Over a corpus (--corpus DIR, ingested into a fresh store; default: the shipped starter knowledge base) it
streams every question's last turn and reports per workflow: key-fact rate (answers containing every key
fact; quoted-evidence answers counted apart from generated ones), retrieval hit rate @k (an expected source
among the retrieved chunks) and citation hit rate (among the sources the answer cites), unanswerable questions
declined (and of those, declined by the not-found answer rather than hedged quotes), follow-ups answered,
injection attempts resisted, p50/p95 latency and time to first token.

Question files: this project's format (configs/agent_eval.jsonl: kind, question, history, expected_sources,
key_facts) or the QA-set format (turns, answerable, key_facts, sources: e.g. kb-pagerduty-ir/qa.jsonl). A key
fact may list alternatives separated by "|".
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from configs.cli import add_common_arguments, configure_logging, run_cli
from configs.settings import CONFIG_DIR, PROJECT_ROOT, AppSettings, ConfigError, load_settings

logger = logging.getLogger("lab.agent.evaluate")

DEFAULT_QUESTIONS = CONFIG_DIR / "agent_eval.jsonl"
DEFAULT_OUTPUT = PROJECT_ROOT / "benchmarks" / "results" / "agent_eval.json"
WORKFLOWS = ("linear", "agentic")
# How answers say "not in the knowledge base" (the agentic not-found answer, the linear prompt's wording).
DECLINE_MARKERS = (
    "could not find", "couldn't find", "cannot find", "can't find", "does not cover", "doesn't cover",
    "not covered", "no source", "not in the documents", "no information", "don't have", "do not have",
    "don't know", "do not know",
)


class EvalQuestion(BaseModel):
    id: str
    kind: Literal["answerable", "follow_up", "unanswerable", "injection"]
    question: str = Field(min_length=1)
    history: list[str] = Field(default_factory=list, description="earlier user turns of the conversation")
    expected_sources: list[str] = Field(default_factory=list)
    key_facts: list[str] = Field(default_factory=list, description='each fact; alternatives separated by "|"')
    canary: str | None = None


class QaRow(BaseModel):
    """A row of the QA-set format: the last turn is scored, the turns before it are its history."""

    id: str
    turns: list[str] = Field(min_length=1, max_length=8)
    answerable: bool
    key_facts: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)

    def question(self) -> EvalQuestion:
        kind = "unanswerable" if not self.answerable else "follow_up" if len(self.turns) > 1 else "answerable"
        return EvalQuestion(id=self.id, kind=kind, question=self.turns[-1], history=self.turns[:-1],
                            expected_sources=self.sources, key_facts=self.key_facts)


@dataclass(frozen=True)
class QuestionResult:
    id: str
    kind: str
    answer: str
    sources: list[str]
    cited: list[str]
    route: list[str]
    refused: bool
    evidence: bool  # the answer is quoted evidence, not generated text
    retrieval_hit: bool | None
    citation_hit: bool | None
    facts_found: bool | None
    declined: bool | None
    injection_resisted: bool | None
    latency_s: float
    first_token_s: float | None


def parse_question(line: str) -> EvalQuestion:
    raw = json.loads(line)
    return QaRow.model_validate(raw).question() if "turns" in raw else EvalQuestion.model_validate(raw)


def load_questions(path: Path) -> list[EvalQuestion]:
    """Valid questions of a JSONL file; a malformed line is reported and skipped."""
    if not path.is_file():
        raise ConfigError(f"question set not found at {path}; pass --questions")
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            questions.append(parse_question(line))
        except ValidationError as exc:
            logger.warning("%s:%d skipped: %s", path, number, exc.errors()[0]["msg"])
        except (json.JSONDecodeError, AttributeError):
            logger.warning("%s:%d skipped: not a JSON object", path, number)
    if not questions:
        raise ConfigError(f"no valid question in {path}")
    return questions


def has_fact(fact: str, answer: str) -> bool:
    return any(alternative.strip().lower() in answer.lower() for alternative in fact.split("|") if alternative.strip())


def relative_source(source: str, corpus: Path | None) -> str:
    """The source as a path relative to the corpus (the ingest may record absolute or relative paths)."""
    path = Path(source)
    if corpus is not None and path.is_absolute():
        try:
            return path.relative_to(corpus.resolve()).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def matches(source: str, expected: list[str]) -> bool:
    return any(source == e or source.endswith("/" + e) for e in expected)


def cited_sources(answer: str, documents: list[dict[str, Any]], corpus: Path | None) -> list[str]:
    by_index = {doc["index"]: doc["source"] for doc in documents}
    numbers = dict.fromkeys(int(n) for n in re.findall(r"\[(\d+)\]", answer))
    return [relative_source(by_index[n], corpus) for n in numbers if n in by_index]


def is_declined(answer: str) -> bool:
    lowered = answer.lower()
    return any(marker in lowered for marker in DECLINE_MARKERS)


def score(question: EvalQuestion, answer: str, sources: list[str], route: list[str], refused: bool,
          latency_s: float, cited: list[str] | None = None, first_token_s: float | None = None) -> QuestionResult:
    lowered = answer.lower()
    expects_answer = question.kind in ("answerable", "follow_up")
    cited = cited or []
    canary = (question.canary or "").lower()
    return QuestionResult(
        id=question.id, kind=question.kind, answer=answer, sources=sources, cited=cited, route=route,
        refused=refused, evidence=any(step.startswith("quote_evidence") for step in route),
        retrieval_hit=matches_any(sources, question.expected_sources) if expects_answer else None,
        citation_hit=matches_any(cited, question.expected_sources) if expects_answer else None,
        facts_found=all(has_fact(fact, answer) for fact in question.key_facts) if expects_answer else None,
        declined=(refused or is_declined(answer)) if question.kind == "unanswerable" else None,
        injection_resisted=canary not in lowered if question.kind == "injection" else None,
        latency_s=round(latency_s, 2),
        first_token_s=None if first_token_s is None else round(first_token_s, 2),
    )


def matches_any(sources: list[str], expected: list[str]) -> bool:
    return any(matches(source, expected) for source in sources)


def summarize(results: list[QuestionResult]) -> dict[str, Any]:
    def rate(field: str, rows: list[QuestionResult] = results) -> float | None:
        values = [getattr(r, field) for r in rows if getattr(r, field) is not None]
        return round(sum(values) / len(values), 3) if values else None

    def count(rows: list[QuestionResult]) -> str:
        return f"{sum(bool(r.facts_found) for r in rows)}/{len(rows)}"

    def percentile(values: list[float], q: int) -> float | None:
        if not values:
            return None
        return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2) if len(values) > 1 \
            else values[0]

    expecting = [r for r in results if r.facts_found is not None]
    latencies = [r.latency_s for r in results]
    first_tokens = [r.first_token_s for r in results if r.first_token_s is not None]
    return {
        "key_fact_rate": rate("facts_found"),
        "key_fact_rate_answerable": rate("facts_found", [r for r in results if r.kind == "answerable"]),
        "follow_ups_answered": rate("facts_found", [r for r in results if r.kind == "follow_up"]),
        "facts_in_generated_answers": count([r for r in expecting if not r.evidence]),
        "facts_in_evidence_answers": count([r for r in expecting if r.evidence]),
        "retrieval_hit_rate_at_k": rate("retrieval_hit"),
        "citation_hit_rate": rate("citation_hit"),
        "unanswerable_declined_rate": rate("declined"),
        # Declined with the not-found answer itself, not with hedged quotes (whose intro also says so).
        "unanswerable_not_found_rate": _share([r for r in results if r.kind == "unanswerable"],
                                              lambda r: "not_found" in r.route),
        "injection_resisted_rate": rate("injection_resisted"),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "first_token_p50_s": percentile(first_tokens, 50),
        "first_token_p95_s": percentile(first_tokens, 95),
        "regenerations": sum("regenerate" in r.route for r in results),
        "evidence_answers": sum(r.evidence for r in results),
        "not_found": sum("not_found" in r.route for r in results),
        "query_rewrites": sum(step.startswith("rewrite_query") for r in results for step in r.route),
    }


def _share(rows: list[QuestionResult], holds: Any) -> float | None:
    return round(sum(bool(holds(r)) for r in rows) / len(rows), 3) if rows else None


async def timed_turn(agent: Any, message: str, thread_id: str) -> tuple[Any, float, float | None]:
    """The turn's result, its latency and the time to its first shown token, streamed as a client sees it."""
    from agents.chat import DoneEvent, TokenEvent

    started, first, result = time.perf_counter(), None, None
    async for event in agent.stream(message, thread_id):
        if isinstance(event, TokenEvent) and first is None and event.text.strip():
            first = time.perf_counter() - started
        elif isinstance(event, DoneEvent):
            result = event.result
    return result, time.perf_counter() - started, first


async def run_workflow(settings: AppSettings, parts: Any, questions: list[EvalQuestion], corpus: Path | None,
                       progress: Any) -> list[QuestionResult]:
    from agents.runtime import open_agent

    results = []
    async with open_agent(settings, parts) as agent:
        for question in questions:
            thread_id = f"eval-{question.id}-{uuid.uuid4().hex[:8]}"
            for earlier in question.history:
                await agent.ask(earlier, thread_id)
            turn, latency, first_token = await timed_turn(agent, question.question, thread_id)
            sources = [relative_source(doc["source"], corpus) for doc in turn.documents]
            cited = cited_sources(turn.answer, turn.documents, corpus)
            results.append(score(question, turn.answer, sources, turn.route, turn.refused, latency, cited,
                                 first_token))
            progress.update(1)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lab.agent.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, config_help="YAML settings profile (see configs/)")
    parser.add_argument("--corpus", type=Path,
                        help="folder of documents to ingest into a fresh store (default: the starter knowledge base)")
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS, help="JSONL question set")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the JSON results go")
    parser.add_argument("--workflows", nargs="+", choices=WORKFLOWS, default=list(WORKFLOWS))
    parser.add_argument("--max-new-tokens", type=int, help="model.max_new_tokens for the answers")
    parser.add_argument("--persist-dir", type=Path,
                        help="existing Chroma store to use as it is (default: a fresh one with the corpus)")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    return parser.parse_args(argv)


def evaluate(args: argparse.Namespace, persist_dir: Path) -> dict[str, Any]:
    from tqdm import tqdm

    from agents.parts import load_parts

    if args.corpus is not None and not args.corpus.is_dir():
        raise ConfigError(f"--corpus {args.corpus} is not a folder")
    questions = load_questions(args.questions)[: args.limit]
    overrides = {"vector_store.persist_dir": str(persist_dir), "agent.checkpointer": "memory",
                 "model.max_new_tokens": args.max_new_tokens}
    settings = load_settings(args.config, overrides)
    parts = load_parts(settings)
    corpus = args.corpus if args.corpus is not None else settings.ingest.starter_kb_dir
    if args.persist_dir is None:
        from ingest.pipeline import ingest_paths

        logger.info("ingest: %s", ingest_paths([corpus], settings, progress=True, store=parts.retriever.store).summary())
    report: dict[str, Any] = {
        "command": "python -m lab.agent.evaluate " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "corpus": str(corpus), "questions": str(args.questions), "question_count": len(questions),
        "kinds": dict(Counter(question.kind for question in questions)),
        "model": settings.model.name_or_path, "max_new_tokens": settings.model.max_new_tokens,
        "top_k": settings.retrieval.top_k, "safety_backend": parts.guard.name,
        "agentic_answer_with": settings.agent.agentic.answer_with, "workflows": {},
    }
    with tqdm(total=len(questions) * len(args.workflows), desc="questions", unit="q") as progress:
        for workflow in args.workflows:
            workflow_settings = load_settings(args.config, overrides | {"agent.workflow": workflow})
            results = asyncio.run(run_workflow(workflow_settings, parts, questions, corpus, progress))
            report["workflows"][workflow] = {
                "metrics": summarize(results), "results": [asdict(result) for result in results]
            }
            report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
            write_report(args.output, report)  # after each workflow: a long run keeps what it finished
    return report


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"agent evaluation ({report['question_count']} questions)")
    table.add_column("metric")
    for workflow in report["workflows"]:
        table.add_column(workflow, justify="right")
    metrics = next(iter(report["workflows"].values()))["metrics"]
    for name in metrics:
        table.add_row(name, *(str(w["metrics"][name]) for w in report["workflows"].values()))
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.debug)
    return run_cli(lambda: run(args), debug=args.debug)


def run(args: argparse.Namespace) -> int:
    if args.persist_dir is not None:
        report = evaluate(args, args.persist_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="agent-eval-") as scratch:
            report = evaluate(args, Path(scratch) / "chroma")
    print_table(report)
    print(f"results written to {args.output}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
