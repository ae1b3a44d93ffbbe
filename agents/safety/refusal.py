"""The refusal the user sees: what the service will not help with, in one or two sentences.

It is built only from the verdict's hazard codes, never from the user's words or the withheld answer, so
it cannot repeat harmful content. A refused request names the category the safety check matched and
invites a rephrase: the check can be wrong, and the user should not read the refusal as an accusation.
"""

from __future__ import annotations

from agents.safety.verdict import HAZARD_CATEGORIES, Verdict

HAZARD_PHRASES: dict[str, str] = {
    "S1": "violence against people or animals",
    "S2": "crimes such as fraud, theft, hacking or drug dealing",
    "S3": "sexual violence or exploitation",
    "S4": "anything that sexualizes or endangers children",
    "S5": "false claims that could damage someone's reputation",
    "S6": "medical, legal or financial steps that need a qualified professional",
    "S7": "finding or exposing someone's private information",
    "S8": "copying or pirating protected work",
    "S9": "weapons that can harm many people",
    "S10": "content that demeans people for who they are",
    "S11": "suicide or self-harm",
    "S12": "sexually explicit content",
    "S13": "misleading people about elections or voting",
    "S14": "running code that abuses the system it runs on",
}
SELF_HARM_SUPPORT = (
    "If you are going through a hard time, please reach out to someone you trust or a local crisis line; "
    "you don't have to face it alone."
)
SPECIALIST_ADVICE = "A doctor, lawyer or financial adviser can help you with this safely."
REPHRASE = "If I misread what you meant, please rephrase it and I'll gladly try again."


def _request_refusal(codes: list[str]) -> str:
    """Names the matched category (and what it covers), says it was the check's reading, not the user's intent."""
    if not codes:
        return f"I can't help with this as asked, because our safety check flagged it. {REPHRASE}"
    names = " and ".join(HAZARD_CATEGORIES[code] for code in codes)
    phrases = " or ".join(HAZARD_PHRASES[code] for code in codes)
    first = f"I can't help with this as asked: our safety check matched it to the {names} category ({phrases})."
    if "S11" in codes:
        return f"{first} {SELF_HARM_SUPPORT}"
    return f"{first} {REPHRASE}"


def refusal_message(verdict: Verdict) -> str:
    codes = [code for code in verdict.categories if code in HAZARD_PHRASES][:2]
    if verdict.stage == "request":
        return _request_refusal(codes)
    phrases = [HAZARD_PHRASES[code] for code in codes]
    first = (f"I can't share that answer, because it would involve {' or '.join(phrases)}." if phrases
             else "I can't share that answer, because it could cause harm.")
    if "S11" in codes:
        return f"{first} {SELF_HARM_SUPPORT}"
    if "S6" in codes:
        return f"{first} {SPECIALIST_ADVICE}"
    return f"{first} I'm happy to help with something else."
