"""Load the agent's parts from settings: prompts, generator, retriever and guard (slow, blocking).

A host (the API) loads them first and can use them before the graph is compiled, e.g. to ingest the starter
knowledge base through the retriever's own store: a second Chroma client on the same directory can hang.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from agents.generation import ChatGenerator
from agents.generator import SequentialGenerator, configure_cpu_threads
from agents.prompts import PromptTemplates, load_prompts
from agents.safety.factory import build_guard
from agents.safety.verdict import SafetyGuard
from configs.settings import AppSettings, ModelSettings
from retrieval.retriever import Retriever, build_retriever

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentParts:
    prompts: PromptTemplates
    generator: ChatGenerator
    retriever: Retriever
    guard: SafetyGuard


def load_parts(settings: AppSettings) -> AgentParts:
    """Load prompts, generator, retriever and guard. Blocking: run it in a worker thread from async code."""
    started = time.perf_counter()
    prompts = load_prompts(settings.agent.prompts_path)  # first: a bad template fails before slow loads
    configure_cpu_threads(settings.model.cpu_threads)  # the embedders run here whichever generator runs
    generator = load_generator(settings.model)
    retriever = build_retriever(settings)
    guard = build_guard(settings, judge=generator.generate)
    logger.info("agent parts loaded in %.1f s (prompts %s, guard %s)",
                time.perf_counter() - started, prompts.version, guard.name)
    return AgentParts(prompts, generator, retriever, guard)


def load_generator(settings: ModelSettings) -> ChatGenerator:
    """The configured backend: a remote OpenAI-compatible server (nothing to load), or the model and adapter
    loaded here behind the engine the settings ask for (model.engine). Close it when done."""
    if settings.backend == "openai":
        from agents.openai_generator import OpenAIGenerator

        return OpenAIGenerator.from_settings(settings)
    from finetune.modeling import load_model, resolve_device

    started = time.perf_counter()
    model, tokenizer = load_model(settings)
    kind = settings.engine.kind
    if kind == "auto":
        kind = "continuous" if resolve_device(settings) == "cuda" else "sequential"
    logger.info(
        "generator %s loaded in %.1f s (adapter: %s, 4-bit: %s, engine: %s)",
        settings.name_or_path,
        time.perf_counter() - started,
        settings.adapter_path or "none",
        bool(getattr(model, "is_loaded_in_4bit", False)),
        kind,
    )
    if kind == "continuous":
        from agents.continuous_generator import ContinuousGenerator

        return ContinuousGenerator(model, tokenizer, settings)
    return SequentialGenerator(model, tokenizer, settings)
