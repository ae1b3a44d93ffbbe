"""The sentence gate: streamed text is released only after the guard passed the answer so far."""

from __future__ import annotations

from agents.safety.verdict import Verdict
from agents.stream_gate import MAX_HELD_CHARS, SentenceGate


def guard_flagging(word: str):
    checked: list[str] = []

    def check(text: str) -> Verdict:
        checked.append(text)
        return Verdict(safe=word not in text, backend="test", stage="response")

    return check, checked


def feed_all(gate: SentenceGate, pieces: list[str]) -> list[str]:
    return [gate.feed(piece) for piece in pieces]


def test_text_is_held_until_a_sentence_ends_then_released_after_a_check():
    check, checked = guard_flagging("BAD")
    gate = SentenceGate(check)
    released = feed_all(gate, ["Hello", " there", ".", " Next", " one"])

    assert released == ["", "", "Hello there.", "", ""]
    assert gate.flush() == " Next one"
    assert checked == ["Hello there.", "Hello there. Next one"]  # always the whole answer so far
    assert gate.checked_text == "Hello there. Next one" and not gate.flagged


def test_a_flagged_sentence_is_never_released_and_the_gate_stays_shut():
    check, _ = guard_flagging("BAD")
    gate = SentenceGate(check)
    released = feed_all(gate, ["Fine.", " Now", " BAD", " stuff.", " More.", " Text"])

    assert released == ["Fine.", "", "", "", "", ""]
    assert gate.flagged and gate.flush() == ""


def test_long_text_without_sentence_ends_is_checked_at_the_size_limit():
    check, checked = guard_flagging("BAD")
    gate = SentenceGate(check)
    released = "".join(feed_all(gate, ["x" * 40] * 7))

    assert len(released) >= MAX_HELD_CHARS and len(checked) == 1


def test_closing_quotes_and_newlines_end_a_sentence():
    check, checked = guard_flagging("BAD")
    gate = SentenceGate(check)
    assert gate.feed('He said "stop."') == 'He said "stop."'
    assert gate.feed(" Line one\n") == " Line one\n"
    assert gate.feed("\n") == ""  # whitespace alone is held, not checked
    assert len(checked) == 2
