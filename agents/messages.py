"""The chat-message type every part of the agent passes around."""

from __future__ import annotations

# [{"role": "system" | "user" | "assistant", "content": "..."}], in the order the turns were said.
ChatMessages = list[dict[str, str]]
