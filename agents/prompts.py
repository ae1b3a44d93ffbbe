"""Versioned prompt templates (configs/prompts.yaml) and the system prompt built from them.

Retrieved text is untrusted: it goes inside `<document>` delimiters, and any delimiter-like tag inside
it is neutralized, so a document cannot close its own block and speak as the system prompt.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError, model_validator

from agents.state import ContextDocument
from configs.settings import ConfigError, validation_problems

# Placeholders each template must use, so a template edit cannot silently drop the context.
REQUIRED_FIELDS: dict[str, set[str]] = {
    "system": {"context"},
    "context": {"documents"},
    "document": {"index", "source", "title", "text"},
    "no_context": set(),
    "empty_answer": set(),
}

_DELIMITER_TAG = re.compile(r"<(/?)(documents?)\b", re.IGNORECASE)


class PromptTemplates(BaseModel):
    version: str
    system: str
    context: str
    document: str
    no_context: str
    empty_answer: str

    @model_validator(mode="after")
    def _placeholders(self) -> PromptTemplates:
        for name, required in REQUIRED_FIELDS.items():
            template = getattr(self, name)
            try:
                found = {field for _, field, _, _ in string.Formatter().parse(template) if field}
            except ValueError as exc:
                raise ValueError(f"template {name!r} is malformed ({exc}); double literal braces: {{{{ }}}}")
            if missing := required - found:
                wanted = ", ".join(f"{{{field}}}" for field in sorted(missing))
                raise ValueError(f"template {name!r} must contain {wanted}")
            if unknown := found - required:
                raise ValueError(f"template {name!r} uses unknown placeholders {sorted(unknown)}")
        return self


def load_prompts(path: Path | str) -> PromptTemplates:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"prompt templates not found at {path}; set agent.prompts_path")
    try:
        return PromptTemplates.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"invalid prompt templates in {path}: {validation_problems(exc)}") from exc


def neutralize_delimiters(text: str) -> str:
    """`<document ...>` / `</documents>` inside untrusted text become inert `&lt;...` text."""
    return _DELIMITER_TAG.sub(lambda m: f"&lt;{m.group(1)}{m.group(2)}", text)


def _attribute(value: str) -> str:
    return neutralize_delimiters(value).replace('"', "'").replace("\n", " ")


def format_documents(templates: PromptTemplates, documents: Sequence[ContextDocument]) -> str:
    return "\n".join(
        templates.document.format(
            index=doc["index"],
            source=_attribute(doc["source"]),
            title=_attribute(doc["title"]),
            text=neutralize_delimiters(doc["text"].strip()),
        )
        for doc in documents
    )


def build_system_prompt(templates: PromptTemplates, documents: Sequence[ContextDocument]) -> str:
    if documents:
        context = templates.context.format(documents=format_documents(templates, documents))
    else:
        context = templates.no_context
    return templates.system.format(context=context)
