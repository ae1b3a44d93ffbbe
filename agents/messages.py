"""The chat-message type every part of the agent passes around."""

from __future__ import annotations

# [{"role": "system" | "user" | "assistant", "content": "..."}], in the order the turns were said.
ChatMessages = list[dict[str, str]]


def split_system(messages: ChatMessages) -> tuple[ChatMessages, ChatMessages]:
    """(the leading system message, if any; the turns after it): generators shorten only the turns."""
    if messages and messages[0]["role"] == "system":
        return messages[:1], messages[1:]
    return [], list(messages)
