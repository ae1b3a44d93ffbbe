"""What a guard looks at in a conversation: the turn to judge and the turns that give it meaning."""

from __future__ import annotations

import re

from agents.messages import ChatMessages
from configs.errors import AppError


class ConversationError(AppError, ValueError):
    """A conversation the guard cannot judge (no user turn); the message says what is missing."""


def user_turns(messages: ChatMessages) -> list[str]:
    return [m["content"] for m in messages if m.get("role") == "user" and m.get("content", "").strip()]


def last_user_turn(messages: ChatMessages) -> str:
    turns = user_turns(messages)
    if not turns:
        raise ConversationError("the conversation has no user message to judge")
    return turns[-1]


# The guard reads text in pieces of at most this many words, each judged on its own. MiniLM reads at most 256
# word pieces from the start of a text, and its heads learnt on short texts (requests: 23 tokens on average), so
# a long text read whole is both cut and out of what the heads know. When the window was chosen (commit c1a503b,
# the frozen-encoder heads of that time), 64-word windows scored answer-stage F1 0.908 at 2.6% false positives
# on the held-out answers, 160-word windows 0.888 at 2.9%.
WINDOW_WORDS = 64
# A request up to this long is also read whole, as the heads learnt requests (MiniLM reads 256 word pieces, about
# 190 English words); a longer one only in windows, since read whole it would be cut off.
WHOLE_REQUEST_WORDS = 3 * WINDOW_WORDS


def word_windows(text: str, max_words: int = WINDOW_WORDS) -> list[str]:
    """`text` in consecutive pieces of at most `max_words` words (a short text: itself, stripped)."""
    words = text.split()
    if len(words) <= max_words:
        return [text.strip()]
    return [" ".join(words[start : start + max_words]) for start in range(0, len(words), max_words)]


_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def paragraph_windows(text: str, max_words: int = WINDOW_WORDS) -> list[str]:
    """Like `word_windows`, but a longer text is cut at its blank lines first, so a question asked below a pasted
    document is read on its own, not mixed with the document's last words.

    Requests only: an answer's paragraphs (the steps of a list) take their meaning from each other; cut apart,
    answers to harmful requests were flagged less (recall 0.823 -> 0.745 in `python -m lab.guard.evaluate`,
    2026-12-05, a variant not kept)."""
    if len(text.split()) <= max_words:
        return [text.strip()]
    return [window for paragraph in _PARAGRAPH_BREAK.split(text) if paragraph.strip()
            for window in word_windows(paragraph, max_words)]


def request_views(messages: ChatMessages) -> list[str]:
    """The latest user turn (whole while it fits, and in windows of its paragraphs when longer than one), and
    the start of it joined to the end of the user turn before it.

    A request pasted after a long document used to be cut off, read whole: one window per 64 words keeps every
    sentence in view. A follow-up can be harmless alone and harmful with its context ("How do you siphon
    gas?" -> "From my neighbour's car, I'm broke"); the guard scores every view and keeps the highest.
    """
    turns = user_turns(messages)
    if not turns:
        raise ConversationError("the conversation has no user message to judge")
    latest = turns[-1].split()
    views = paragraph_windows(turns[-1])
    if WINDOW_WORDS < len(latest) <= WHOLE_REQUEST_WORDS:
        views.insert(0, turns[-1].strip())
    if len(turns) > 1:
        views.append(" ".join(turns[-2].split()[-WINDOW_WORDS:]) + "\n" + " ".join(latest[:WINDOW_WORDS]))
    return views
