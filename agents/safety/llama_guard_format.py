"""Llama Guard 3's prompt and the parsing of its answer ("safe", or "unsafe" and a line of codes).

The prompt text follows the chat template shipped with meta-llama/Llama-Guard-3-8B (its wording, the
"according our" included, is what the model was trained on). The same text, without the Llama 3 header
tokens, is what the generator-as-judge fallback receives as its user message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from agents.messages import ChatMessages
from configs.errors import AppError

# Category titles as they appear in Llama Guard 3's own prompt.
LLAMA_GUARD_TITLES: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex Crimes",
    "S4": "Child Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}
ROLE_NAMES = {"user": "User", "assistant": "Agent"}
Role = Literal["User", "Agent"]

_CODE = re.compile(r"\bS(1[0-4]|[1-9])\b")


class LlamaGuardFormatError(AppError, ValueError):
    """Settings that cannot make a Llama Guard prompt (e.g. an unknown category code)."""


def task_text(conversation: ChatMessages, role: Role, categories: list[str]) -> str:
    """The instruction Llama Guard reads: policy, conversation, and which role's last turn to judge."""
    unknown = [code for code in categories if code not in LLAMA_GUARD_TITLES]
    if unknown:
        raise LlamaGuardFormatError(f"safety.llama_guard_categories has unknown codes {unknown}; use S1..S14")
    policy = "\n".join(f"{code}: {LLAMA_GUARD_TITLES[code]}." for code in categories)
    turns = "\n\n".join(
        f"{ROLE_NAMES[m['role']]}: {m['content']}" for m in conversation if m.get("role") in ROLE_NAMES
    )
    return (
        f"Task: Check if there is unsafe content in '{role}' messages in conversations according our safety "
        "policy with the below categories.\n\n"
        f"<BEGIN UNSAFE CONTENT CATEGORIES>\n{policy}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\n{turns}\n\n<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:\n"
        " - First line must read 'safe' or 'unsafe'.\n"
        " - If unsafe, a second line must include a comma-separated list of violated categories."
    )


def llama_guard_prompt(conversation: ChatMessages, role: Role, categories: list[str]) -> str:
    """The full Llama 3 prompt string, ready to tokenize without adding special tokens."""
    return (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        f"{task_text(conversation, role, categories)}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


@dataclass(frozen=True)
class GuardAnswer:
    """A parsed assessment; `parsed` is False when the text said neither safe nor unsafe."""

    safe: bool
    categories: list[str] = field(default_factory=list)
    parsed: bool = True


def parse_guard_output(text: str) -> GuardAnswer:
    """Read "safe" / "unsafe\\nS1,S10". Tolerates case, spacing and extra words after the first token.

    Codes outside S1..S14 are dropped. An answer that is neither is returned with parsed=False, safe=False
    so that the caller decides (fail closed or open) rather than this parser.
    """
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return GuardAnswer(safe=False, parsed=False)
    first = re.sub(r"[^a-z]", " ", lines[0].lower()).split()
    head = first[0] if first else ""
    if head == "safe":
        return GuardAnswer(safe=True)
    if head != "unsafe":
        return GuardAnswer(safe=False, parsed=False)
    rest = " ".join([lines[0][len("unsafe") :], *lines[1:]]).upper()
    codes = list(dict.fromkeys(f"S{number}" for number in _CODE.findall(rest)))
    return GuardAnswer(safe=False, categories=codes)
