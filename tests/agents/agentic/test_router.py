from __future__ import annotations

import pytest

from agents.agentic.rewrite import rewrite_query
from agents.agentic.router import classify_turn, is_follow_up, standalone_query


@pytest.mark.parametrize("message", ["Hello!", "hi there", "Thanks a lot!", "thank you", "How are you?",
                                     "What is my name?", "What did I just ask?", "bye",
                                     "My name is Ada.", "Hi, I'm Ada Lovelace!"])
def test_small_talk_and_questions_about_the_chat_are_conversation(message):
    assert classify_turn(message) == "conversation"


@pytest.mark.parametrize("message", ["How do I change the port?", "Hello, how do I ingest PDFs?",
                                     "Thanks. Which file types are supported?", "What is the capital of France?",
                                     "My name is Ada. How do I page the Incident Commander?"])
def test_everything_else_goes_to_the_knowledge_base(message):
    assert classify_turn(message) == "knowledge"


def test_a_pronoun_led_follow_up_carries_the_previous_turns_key_terms():
    query = standalone_query("What about its price?", ["Does the enterprise plan include support?"])
    assert query == "What about its price? (enterprise plan include support)"


def test_a_self_contained_question_is_left_alone():
    question = "Which file types can the ingest command read from a folder?"
    assert not is_follow_up(question)
    assert standalone_query(question, ["What port does the service use?"]) == question


def test_a_first_question_has_nothing_to_merge():
    assert standalone_query("and its price?", []) == "and its price?"


def test_rewrites_keep_key_words_as_written_then_add_the_previous_turns():
    question = "How can I change the port that the service listens on?"
    assert rewrite_query(question, 1, ["Tell me about Docker images"]) == "change port service listens"
    assert rewrite_query(question, 2, ["Tell me about the service's Docker images"]) == (
        "change port service listens docker images"  # "service's" adds nothing new
    )
