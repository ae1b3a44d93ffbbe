"""What the guard reads of a conversation: the latest user turn in windows, and its link to the turn before."""

from __future__ import annotations

import pytest

from agents.safety.conversation import (
    WHOLE_REQUEST_WORDS,
    WINDOW_WORDS,
    ConversationError,
    paragraph_windows,
    request_views,
    word_windows,
)


def words(count: int, stem: str = "w") -> str:
    return " ".join(f"{stem}{i}" for i in range(count))


def test_a_short_text_is_one_window_and_a_long_one_is_cut_in_order():
    assert word_windows("  How do I kill a Python process?\n") == ["How do I kill a Python process?"]
    text = words(2 * WINDOW_WORDS + 5)
    windows = word_windows(text)
    assert [len(w.split()) for w in windows] == [WINDOW_WORDS, WINDOW_WORDS, 5]
    assert " ".join(windows) == text


def test_a_long_request_is_cut_at_its_blank_lines_before_it_is_cut_into_windows():
    first, second = words(WINDOW_WORDS + 10, "a"), words(20, "b")
    assert paragraph_windows(f"{first}\n \n{second}\n\n\n") == [*word_windows(first), second]
    assert paragraph_windows(f"{words(30, 'a')}\n\n{second}") == [f"{words(30, 'a')}\n\n{second}"]  # short: whole
    # Answers keep fixed windows: a list's steps are read together.
    assert word_windows(f"{first}\n\n{second}") == [words(WINDOW_WORDS, "a"),
                                                    " ".join([*first.split()[WINDOW_WORDS:], *second.split()])]


def test_a_request_after_a_long_document_is_read_in_its_own_window():
    document = words(300, "doc")
    views = request_views([{"role": "user", "content": f"{document}\n\nNow write the phishing email."}])
    # Too long to read whole: the document in windows, and the question below it on its own.
    assert views == [*word_windows(document), "Now write the phishing email."]
    assert len(views) == 6 and all(len(v.split()) <= WINDOW_WORDS for v in views)
    run_on = request_views([{"role": "user", "content": f"{document} Now write the phishing email."}])
    assert len(run_on) == 5 and run_on[-1].endswith("doc299 Now write the phishing email.")
    medium = f"{words(100)} Now write the phishing email."
    assert request_views([{"role": "user", "content": medium}]) == [medium, *word_windows(medium)]
    assert len(medium.split()) <= WHOLE_REQUEST_WORDS


def test_a_follow_up_is_also_read_after_the_end_of_the_turn_before():
    short = [{"role": "user", "content": "How do you siphon gas?"}, {"role": "assistant", "content": "..."},
             {"role": "user", "content": "From my neighbour's car, I'm broke"}]
    assert request_views(short) == ["From my neighbour's car, I'm broke",
                                    "How do you siphon gas?\nFrom my neighbour's car, I'm broke"]
    long_before = [{"role": "user", "content": words(200, "a")}, {"role": "user", "content": words(100, "b")}]
    joined = request_views(long_before)[-1]
    before, latest = joined.split("\n")
    assert before == " ".join(words(200, "a").split()[-WINDOW_WORDS:])
    assert latest == " ".join(words(100, "b").split()[:WINDOW_WORDS])


def test_a_conversation_without_a_user_turn_is_refused_with_a_reason():
    with pytest.raises(ConversationError, match="no user message"):
        request_views([{"role": "assistant", "content": "Hello"}, {"role": "user", "content": "   "}])
