"""A paced token source for measuring the service apart from any model: an OpenAI-compatible chat endpoint that
streams one word per `--interval-s` for `max_tokens` words (`--tokens-per-chunk` words per event), counts them
in /metrics, and answers /health. Not a model: every answer is the same word; `benchmarks.service_overhead`
puts the service in front of it to time what the service itself costs per turn and per streamed token.

    python -m benchmarks.paced_server --port 8001 --interval-s 0.005
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

TOKENS_METRIC = "paced_generated_tokens_total"
WORD = " word"


def paced_app(interval_s: float, tokens_per_chunk: int) -> Starlette:
    generated = 0

    async def chat(request: Request) -> StreamingResponse:
        tokens = int((await request.json()).get("max_tokens") or 16)

        async def events() -> AsyncIterator[str]:
            nonlocal generated
            sent = 0
            while sent < tokens:
                chunk = min(tokens_per_chunk, tokens - sent)
                await asyncio.sleep(interval_s * chunk)
                sent += chunk
                generated += chunk
                delta = {"choices": [{"index": 0, "delta": {"content": WORD * chunk}, "finish_reason": None}]}
                yield f"data: {json.dumps(delta)}\n\n"
            usage = {"choices": [], "usage": {"completion_tokens": sent}}
            yield f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def metrics(request: Request) -> PlainTextResponse:
        # The process's CPU seconds under the name prometheus-client gives them, as the service and vLLM report.
        return PlainTextResponse(f"{TOKENS_METRIC} {generated}\nprocess_cpu_seconds_total {time.process_time()}\n")

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/metrics", metrics),
                             Route("/health", health)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval-s", type=float, default=0.005, help="seconds per word, as a decode step")
    parser.add_argument("--tokens-per-chunk", type=int, default=1, help="words per streamed event")
    args = parser.parse_args(argv)
    uvicorn.run(paced_app(args.interval_s, args.tokens_per_chunk), host="127.0.0.1", port=args.port,
                log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
