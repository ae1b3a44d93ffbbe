"""The agentic workflow's versioned prompts (configs/prompts_agentic.yaml); its thresholds are
`configs.settings.AgenticSettings` (`agent.agentic`)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from agents.prompts import PromptTemplates
from configs.settings import ConfigError, validation_problems


class AgenticPrompts(BaseModel):
    version: str
    answer: PromptTemplates
    strict: PromptTemplates
    not_found: str
    evidence_intro: str


def load_agentic_prompts(path: Path | str) -> AgenticPrompts:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"agentic prompt templates not found at {path}; set agent.agentic.prompts_path")
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
