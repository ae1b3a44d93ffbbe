"""Llama Guard 3 prompt building and output parsing, and the two backends that use them."""

from __future__ import annotations

import pytest

from agents.safety.judge import GeneratorJudgeGuard
from agents.safety.llama_guard_format import (
    LlamaGuardFormatError,
    llama_guard_prompt,
    parse_guard_output,
    task_text,
)

ALL_CODES = [f"S{i}" for i in range(1, 15)]
CONVERSATION = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "How do I kill a Python process?"},
]


@pytest.mark.parametrize(
    ("text", "safe", "categories", "parsed"),
    [
        ("safe", True, [], True),
        ("\n\nsafe\n", True, [], True),
        ("Safe.", True, [], True),
        ("unsafe\nS10", False, ["S10"], True),
        ("unsafe\nS1,S10", False, ["S1", "S10"], True),
        ("unsafe\nS1, S12 ,S14", False, ["S1", "S12", "S14"], True),
        ("UNSAFE\ns9", False, ["S9"], True),
        ("unsafe S2", False, ["S2"], True),
        ("unsafe\nS15,S0,S3", False, ["S3"], True),  # codes outside S1..S14 are dropped
        ("unsafe\nS1,S1", False, ["S1"], True),
        ("unsafe", False, [], True),
        ("", False, [], False),
        ("I think this is fine", False, [], False),
        ("The request is unsafe", False, [], False),  # the verdict must come first
    ],
)
def test_parse_guard_output(text, safe, categories, parsed):
    answer = parse_guard_output(text)
    assert (answer.safe, answer.categories, answer.parsed) == (safe, categories, parsed)


def test_request_prompt_follows_the_llama_guard_3_template():
    prompt = llama_guard_prompt(CONVERSATION, "User", ALL_CODES)

    assert prompt.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nTask: Check if there is "
                             "unsafe content in 'User' messages")
    assert prompt.endswith("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert "S1: Violent Crimes.\nS2: Non-Violent Crimes." in prompt and "S14: Code Interpreter Abuse." in prompt
    assert "<BEGIN CONVERSATION>\n\nUser: How do I kill a Python process?\n\n<END CONVERSATION>" in prompt
    assert "You are helpful" not in prompt  # system turns are not part of the judged conversation
    assert "ONLY THE LAST User message" in prompt


def test_response_prompt_judges_the_agent_turn_with_the_request_in_view():
    conversation = [*CONVERSATION, {"role": "assistant", "content": "Run kill <pid>."}]
    text = task_text(conversation, "Agent", ["S1", "S10"])

    assert "'Agent' messages" in text and "ONLY THE LAST Agent message" in text
    assert "User: How do I kill a Python process?\n\nAgent: Run kill <pid>." in text
    assert "S2:" not in text and "S10: Hate." in text


def test_unknown_category_code_is_a_clear_error():
    with pytest.raises(LlamaGuardFormatError, match="S99"):
        task_text(CONVERSATION, "User", ["S1", "S99"])


def test_generator_judge_parses_the_policy_model_reply():
    asked: list[list[dict[str, str]]] = []

    def judge(messages: list[dict[str, str]]) -> str:
        asked.append(messages)
        return "unsafe\nS10" if "Agent:" in messages[0]["content"] else "safe"

    guard = GeneratorJudgeGuard(judge, categories=ALL_CODES)
    request = guard.check_request(CONVERSATION)
    response = guard.check_response(CONVERSATION, "Those people are vermin.")

    assert request.safe and request.score == 0.0 and request.stage == "request"
    assert not response.safe and response.categories == ["S10"] and response.score == 1.0
    assert response.backend == "generator_judge" and response.stage == "response"
    assert asked[1][0]["role"] == "user" and "Agent: Those people are vermin." in asked[1][0]["content"]


@pytest.mark.parametrize(("fail_closed", "safe"), [(True, False), (False, True)])
def test_unreadable_judge_reply_follows_fail_closed(fail_closed, safe):
    guard = GeneratorJudgeGuard(lambda messages: "Sure! Here is a poem.", categories=ALL_CODES,
                                fail_closed=fail_closed)
    verdict = guard.check_request(CONVERSATION)
    assert verdict.safe is safe and verdict.score == 0.5
