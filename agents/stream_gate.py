"""Release streamed answer text to the user one checked sentence at a time.

Streaming raw tokens would show the user an answer before the output safety check has seen it. The
gate holds text back until a sentence ends, has the guard judge the whole answer so far, and releases
the held text only if that passes. A flagged prefix stops the stream: the user never sees the flagged
sentence, and the caller can stop generating. Cost: the first token waits for the first sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from agents.safety.verdict import Verdict

# A sentence ends at . ! ? or a newline, optionally followed by closing quotes/brackets, then space.
_SENTENCE_END = re.compile(r"[.!?\n][\"')\]]*\s*$")
# Text without sentence breaks (a list, code) is still checked at this length, so it cannot pile up.
MAX_HELD_CHARS = 240


class SentenceGate:
    def __init__(self, check: Callable[[str], Verdict]) -> None:
        self._check = check
        self._released = ""
        self._held = ""
        self.verdict: Verdict | None = None  # the latest verdict, on `checked_text`
        self.checked_text = ""

    @property
    def flagged(self) -> bool:
        return self.verdict is not None and not self.verdict.safe

    def feed(self, piece: str) -> str:
        """Add generated text; return what may be shown now ('' while holding or once flagged)."""
        if self.flagged:
            return ""
        self._held += piece
        if len(self._held) >= MAX_HELD_CHARS or (_SENTENCE_END.search(self._held) and self._held.strip()):
            return self._release()
        return ""

    def flush(self) -> str:
        """At the end of generation: check and return whatever is still held."""
        if self.flagged or not self._held:
            return ""
        return self._release()

    def _release(self) -> str:
        candidate = self._released + self._held
        self.verdict = self._check(candidate)
        self.checked_text = candidate
        if self.flagged:
            return ""
        released, self._held = self._held, ""
        self._released = candidate
        return released
