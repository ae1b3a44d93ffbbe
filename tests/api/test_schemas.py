"""Request bodies: what the schema says is what is accepted (schemathesis checks it end to end, slowly)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.openai_schemas import CompletionRequest


def completion(messages: list[dict], **fields) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "messages": messages, **fields})


def test_the_last_user_message_is_the_question_and_later_messages_are_ignored():
    body = completion([{"role": "system", "content": "be brief"}, {"role": "user", "content": "first"},
                       {"role": "assistant", "content": "an answer"}, {"role": "user", "content": [
                           {"type": "text", "text": "second "}, {"type": "text", "text": "question"}]},
                       {"role": "assistant", "content": None}])
    earlier, question = body.question()
    assert question.text == "second question" and [m.text for m in earlier] == ["be brief", "first", "an answer"]


@pytest.mark.parametrize("fields", [{"temperature": False}, {"top_p": "0.5"}, {"stream": 1}, {"n": True},
                                    {"max_tokens": "3"}, {"max_tokens": 2.5}, {"max_tokens": 0}])
def test_each_field_takes_its_own_json_type_only(fields):
    with pytest.raises(ValidationError):
        completion([{"role": "user", "content": "hi"}], **fields)


def test_an_integral_float_is_a_json_integer():
    assert completion([{"role": "user", "content": "hi"}], max_tokens=3.0, n=1.0).max_tokens == 3


@pytest.mark.parametrize("content", ["  ", [{"type": "text", "text": " "}], []])
def test_a_blank_user_message_is_refused(content):
    with pytest.raises(ValidationError, match="blank|at least 1 item"):
        completion([{"role": "user", "content": content}])
