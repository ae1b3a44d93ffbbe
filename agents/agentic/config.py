"""Thresholds and bounds of the agentic workflow; its versioned prompts (configs/prompts_agentic.yaml)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError

from agents.prompts import PromptTemplates
from configs.settings import CONFIG_DIR, ConfigError, validation_problems

DEFAULT_PROMPTS_PATH = CONFIG_DIR / "prompts_agentic.yaml"


class AgenticSettings(BaseModel):
    """Every decision of the workflow is a threshold here, so it can be tuned and tested without the model."""

    max_retrieval_retries: int = Field(2, ge=0, le=5, description="query rewrites after a failed grade")
    min_relevant_chunks: int = Field(1, ge=1, description="graded chunks needed to answer")
    relevance_score: float = Field(0.40, ge=0.0, le=1.0, description="cosine score that alone passes a chunk")
    relevance_floor: float = Field(0.25, ge=0.0, le=1.0, description="cosine score below which a chunk fails")
    relevance_overlap: float = Field(
        0.34, ge=0.0, le=1.0, description="share of query terms a chunk between floor and score must contain"
    )
    grounding_similarity: float = Field(
        0.55, ge=0.0, le=1.0, description="sentence-chunk cosine that supports"
    )
    grounding_overlap: float = Field(
        0.6, ge=0.0, le=1.0, description="share of sentence terms found in chunks"
    )
    grounded_share: float = Field(0.5, ge=0.0, le=1.0, description="supported sentences needed to pass")
    recursion_limit: int = Field(40, ge=10, description="LangGraph super-steps per turn (a backstop)")


class AgenticPrompts(BaseModel):
    version: str
    answer: PromptTemplates
    strict: PromptTemplates
    not_found: str
    ungrounded_caveat: str


def load_agentic_prompts(path: Path | str = DEFAULT_PROMPTS_PATH) -> AgenticPrompts:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"agentic prompt templates not found at {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        version = raw.get("version") if isinstance(raw, dict) else None
        # Each template set carries the file's version, as agents.prompts expects.
        for name in ("answer", "strict"):
            if isinstance(raw, dict) and isinstance(raw.get(name), dict):
                raw[name] = {"version": version, **raw[name]}
        return AgenticPrompts.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"invalid agentic prompt templates in {path}: {validation_problems(exc)}") from exc
