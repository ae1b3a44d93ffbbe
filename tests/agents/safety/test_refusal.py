"""The refusal text: short, says what is declined, never repeats the user's words or the answer."""

from __future__ import annotations

import re

import pytest

from agents.safety.refusal import refusal_message
from agents.safety.verdict import HAZARD_CATEGORIES, Verdict


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


@pytest.mark.parametrize("code", list(HAZARD_CATEGORIES))
@pytest.mark.parametrize("stage", ["request", "response"])
def test_every_category_gets_one_or_two_sentences(code, stage):
    message = refusal_message(Verdict(safe=False, categories=[code], score=0.9, backend="t", stage=stage))
    assert 1 <= len(sentences(message)) <= 2
    assert message.startswith("I can't")


def test_names_what_is_declined_and_offers_support_for_self_harm():
    hate = refusal_message(Verdict(safe=False, categories=["S10"], score=0.9, backend="t", stage="request"))
    self_harm = refusal_message(Verdict(safe=False, categories=["S11"], score=0.9, backend="t", stage="request"))
    assert "demeans people" in hate
    assert "crisis line" in self_harm


@pytest.mark.parametrize("code", list(HAZARD_CATEGORIES))
def test_request_refusal_names_the_category_and_does_not_accuse(code):
    message = refusal_message(Verdict(safe=False, categories=[code], score=0.9, backend="t", stage="request"))
    assert f"the {HAZARD_CATEGORIES[code]} category" in message
    assert "safety check" in message  # the check's reading, not a claim about the user's intent
    assert not re.search(r"\byou (want|asked|are trying|intend)|\byour (harmful|request is)", message.lower())
    if code != "S11":  # self-harm gets support in its second sentence instead
        assert "rephrase" in message


def test_request_refusal_without_a_category_still_invites_a_rephrase():
    message = refusal_message(Verdict(safe=False, categories=[], score=0.9, backend="t", stage="request"))
    assert message.startswith("I can't help with this as asked") and "rephrase" in message
    assert len(sentences(message)) == 2


def test_no_category_still_gives_a_refusal():
    message = refusal_message(Verdict(safe=False, categories=[], score=0.9, backend="t", stage="response"))
    assert message.startswith("I can't share that answer") and len(sentences(message)) == 2


def test_refusal_never_echoes_harmful_content():
    # The message is built from codes only; whatever was asked or generated cannot leak into it.
    verdict = Verdict(safe=False, categories=["S9", "S1"], score=0.99, backend="t", stage="request")
    message = refusal_message(verdict)
    assert not {"bomb", "ammonium", "nitrate", "detonate"} & set(re.findall(r"[a-z]+", message.lower()))
    assert "weapons that can harm many people or violence against people or animals" in message
