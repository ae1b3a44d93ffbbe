"""The remote generator backend: any server speaking OpenAI's Chat Completions API (vLLM serving Llama 3.1 8B
with the ULMA adapter, llama.cpp, TGI, this project's own service...). Nothing is loaded in this process.

The server batches concurrent requests itself, so there is no lock here. Answers stream over SSE; closing
the stream closes the HTTP response, and a vLLM server aborts the request when its client goes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import openai

from agents.generation import GenerationError, GenerationStats, GeneratorUnavailable
from agents.messages import ChatMessages, split_system
from configs.settings import ModelSettings

logger = logging.getLogger(__name__)


def _http_errors(name: str) -> tuple[type[Exception], ...]:
    """`name` from each HTTP library the SDK may use (httpx2 from openai 3 on, httpx before): the raw event
    stream lets their errors through unwrapped."""
    found = [getattr(httpx, name)]
    with contextlib.suppress(ImportError):
        import httpx2

        found.append(getattr(httpx2, name))
    return tuple(found)


TRANSPORT_ERRORS = _http_errors("TransportError")
TIMEOUT_ERRORS = _http_errors("TimeoutException")


class OpenAIGenerator:
    """agents.generation.ChatGenerator over an OpenAI-compatible server (`model.backend: openai`)."""

    def __init__(self, client: openai.OpenAI, settings: ModelSettings) -> None:
        self.client = client
        self.settings = settings
        self.stats = GenerationStats()
        self.concurrency = settings.openai.max_concurrent_requests  # the server batches concurrent requests

    @classmethod
    def from_settings(cls, settings: ModelSettings) -> OpenAIGenerator:
        remote = settings.openai
        client = openai.OpenAI(
            base_url=remote.base_url,
            # Given explicitly, so the client never falls back to OPENAI_API_KEY from the environment.
            api_key=remote.api_key.get_secret_value() if remote.api_key else "none",
            timeout=openai.Timeout(remote.read_timeout_s, connect=remote.connect_timeout_s),
            max_retries=remote.max_retries,
        )
        logger.info("generator: model %r on the OpenAI-compatible server %s", remote.model, remote.base_url)
        return cls(client, settings)

    def generate(self, messages: ChatMessages) -> str:
        return "".join(self.stream(messages))

    def close(self) -> None:
        self.client.close()

    def stream(self, messages: ChatMessages) -> Iterator[str]:
        """Yield text pieces as the server sends them. Closing the iterator closes the HTTP stream."""
        started = time.perf_counter()
        pieces, usage_tokens = 0, None
        try:
            # The raw event stream: the SDK still sends the request, retries and maps error statuses, but its
            # typed chunks cost more CPU per token than the rest of the service's turn (profiled at 32 streams).
            with self.client.chat.completions.with_streaming_response.create(**self._request(messages)) as response:
                for chunk in chunk_events(response.iter_lines()):
                    if chunk.get("usage"):  # the last chunk, from servers that report usage
                        usage_tokens = chunk["usage"].get("completion_tokens")
                    for choice in chunk.get("choices") or ():
                        if content := (choice.get("delta") or {}).get("content"):
                            pieces += 1
                            yield content
        except (openai.OpenAIError, *TRANSPORT_ERRORS) as exc:
            raise self._error(exc) from exc
        except StreamError as exc:
            raise GenerationError(f"the model server at {self.settings.openai.base_url} failed mid-answer: {exc}") \
                from None
        finally:
            # Servers that don't report usage send about one token per chunk (vLLM, llama.cpp do).
            self.stats.record(usage_tokens if usage_tokens is not None else pieces, time.perf_counter() - started)

    def _request(self, messages: ChatMessages) -> dict[str, Any]:
        s = self.settings
        request: dict[str, Any] = {
            "model": s.openai.model,
            "messages": fit_to_budget(messages, s.openai.max_input_chars),
            "max_tokens": s.max_new_tokens,
            "temperature": s.temperature,  # 0: greedy, as the local backend
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if s.temperature > 0:
            request["top_p"] = s.top_p
        if s.openai.extra_body:
            request["extra_body"] = s.openai.extra_body
        return request

    def _error(self, exc: Exception) -> GenerationError:
        """A message an operator can act on (it goes to the log; the API client sees a fixed text)."""
        server = f"the model server at {self.settings.openai.base_url}"
        if isinstance(exc, (openai.APITimeoutError, *TIMEOUT_ERRORS)):
            return GeneratorUnavailable(f"{server} did not answer within {self.settings.openai.read_timeout_s:g} s")
        if isinstance(exc, openai.APIConnectionError):
            return GeneratorUnavailable(f"{server} is unreachable: {exc.__cause__ or exc}")
        if isinstance(exc, TRANSPORT_ERRORS):
            return GeneratorUnavailable(f"{server} broke off the answer: {exc!r}")
        if isinstance(exc, openai.APIStatusError):
            error = GeneratorUnavailable if exc.status_code == 429 or exc.status_code >= 500 else GenerationError
            # The body says why (vLLM: {"message": ...}; this project's service: {"detail": ...}).
            return error(f"{server} answered {exc.status_code}: {exc.response.text[:300] or exc.message}")
        return GenerationError(f"{server} failed: {exc}")


def fit_to_budget(messages: ChatMessages, max_chars: int) -> ChatMessages:
    """Leave out the oldest turns after the system prompt until the prompt fits `max_chars` (the latest turn
    always stays: the API bounds its length)."""
    system, turns = split_system(messages)
    kept = turns
    while len(kept) > 1 and sum(len(m["content"]) for m in system + kept) > max_chars:
        kept = kept[1:]
    if len(kept) < len(turns):
        logger.warning("prompt over %d characters: %d oldest turns left out", max_chars, len(turns) - len(kept))
    return system + kept


class StreamError(Exception):
    """An error event inside an OpenAI-style stream (the status was 200 by then)."""


def chunk_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of an OpenAI-style Server-Sent Events stream, up to `data: [DONE]`; comments, other
    fields and blank lines are skipped. Raises StreamError on an error event (vLLM and this project's service
    send `{"error": {"message": ...}}` when a request fails after its first chunk)."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            raise StreamError(f"not JSON: {data[:200]!r}") from None
        if not isinstance(event, dict):
            raise StreamError(f"not a JSON object: {data[:200]!r}")
        if "error" in event:
            error = event["error"]
            raise StreamError(error.get("message", str(error)) if isinstance(error, dict) else str(error))
        yield event
