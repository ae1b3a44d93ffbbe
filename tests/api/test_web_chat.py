"""The web chat page in headless Chromium (Debian's `chromium`, driven by Playwright).

Against the real server that tests/api/conftest.py starts, API keys on: it asks for a key, streams an answer
with its sources, keeps the conversation across a reload and marks a refusal; saves benchmarks/results/web_chat.png.
Against a development-mode app (no key) whose agent replays the events of answers taken back, every kind in
one run (the real model's retractions depend on the question, and a withheld answer is rare): the page ends on
the authoritative answer, never on the withdrawn text.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Response, expect, sync_playwright

from agents.chat import DoneEvent, RetractEvent, TokenEvent, TurnResult
from agents.generation import GenerationStats
from agents.safety.verdict import Verdict
from agents.state import ContextDocument
from api.app import create_app
from configs.settings import AppSettings
from tests.api.test_app import uvicorn_in_thread
from tests.api.test_server import BENIGN, HARMFUL

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH: apt-get install chromium "
                                                "(.ci/run installs it when run as root)"),
]

SCREENSHOT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "web_chat.png"
TURN_TIMEOUT_MS = 120_000
# Records every partial answer the page shows while it streams (before the `done` event finishes it).
WATCH_STREAMING = """() => {
  window.streamedTexts = [];
  new MutationObserver(() => {
    const last = document.querySelector("#messages > .msg.assistant:last-child");
    if (last && last.dataset.state === "streaming") window.streamedTexts.push(last.querySelector(".answer").textContent);
  }).observe(document.getElementById("messages"),
             {subtree: true, childList: true, characterData: true, attributes: true});
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (its own storage) for each test."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    failures: list[str] = []  # uncaught exceptions and console errors other than failed requests (the 401s)
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.on("console", lambda message: failures.append(message.text)
            if message.type == "error" and "Failed to load resource" not in message.text else None)
    yield page
    context.close()
    assert not failures, failures


def done_event(response: Response) -> dict:
    """The `done` event's body from a finished /v1/chat/stream response."""
    blocks = response.text().split("\n\n")
    done = [block for block in blocks if block.startswith("event: done")]
    assert len(done) == 1, response.text()
    return json.loads(done[0].split("data: ", 1)[1])


def send(page: Page, message: str) -> None:
    page.fill("#input", message)
    page.press("#input", "Enter")


def thread_id(page: Page) -> str | None:
    return page.evaluate("JSON.parse(localStorage.getItem('aligned-rag.conversation')).threadId")


def test_the_page_asks_for_a_key_streams_answers_with_sources_and_marks_refusals(server, page):
    page.goto(server.base_url)
    expect(page.locator("#key-panel")).to_be_visible()
    expect(page.locator("#key-message")).to_contain_text("needs an API key")
    page.fill("#key-input", "not-a-key")
    page.press("#key-input", "Enter")
    expect(page.locator("#key-message")).to_contain_text("not accepted")
    page.fill("#key-input", server.api_key)
    page.press("#key-input", "Enter")
    expect(page.locator("#key-panel")).to_be_hidden()
    expect(page.locator("#status")).to_contain_text("Ready")

    # A request the service turns down before any model runs: a readable error, the text back in the input.
    send(page, "x" * (server.max_message_chars + 1))
    expect(page.locator(".error-box")).to_contain_text("The message was not accepted")
    expect(page.locator(".error-box")).to_contain_text(f"at most {server.max_message_chars} characters")
    expect(page.locator("#input")).to_have_value("x" * (server.max_message_chars + 1))

    page.evaluate(WATCH_STREAMING)
    with page.expect_response("**/v1/chat/stream") as streamed:
        send(page, BENIGN)
    answer = page.locator("#messages > .msg.assistant").last
    expect(answer).to_have_attribute("data-state", "done", timeout=TURN_TIMEOUT_MS)
    done = done_event(streamed.value)
    assert any(text.strip() for text in page.evaluate("window.streamedTexts")), "no partial answer was shown"
    assert answer.locator(".answer").text_content() == done["answer"]  # the authoritative answer, as sent
    assert answer.locator(".source").count() == len(done["sources"]) > 0
    expect(answer.locator(".sources")).to_contain_text("chat-api")  # the guide's API page, by its citation
    assert thread_id(page) == done["thread_id"]

    # A reload keeps the key (this tab) and the conversation (this browser); the next turn continues the thread.
    page.reload()
    expect(page.locator("#status")).to_contain_text("Ready")
    expect(page.locator("#messages > .msg")).to_have_count(2)
    send(page, HARMFUL)
    refusal = page.locator("#messages > .msg.refusal")
    expect(refusal).to_be_visible(timeout=TURN_TIMEOUT_MS)
    expect(refusal.locator(".refusal-badge")).to_contain_text("Request refused")
    assert thread_id(page) == done["thread_id"]

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOT, full_page=True)


GUIDE_PAGE = ContextDocument(index=1, id="c1", source="starter_kb/chat-api.md", title="The chat API",
                             citation="starter_kb/chat-api.md > Streaming", score=0.71,
                             text="The stream ends with one done event whose answer is authoritative.")
EVIDENCE = 'The guide says: "The stream ends with one done event whose answer is authoritative." [1]'
WITHHELD = "I can't help with that. I'm happy to help with something else."


class ReplayingAgent:
    """Replays the events of two turns whose streamed text the agentic workflow takes back: an unsupported
    answer regenerated and then replaced by quoted evidence, and an answer the output check withholds.
    Pauses between events, so the page shows each state before the next arrives."""

    generation_stats = GenerationStats()

    async def check_owner(self, thread_id: str, owner: str) -> None:
        pass

    async def stream(self, message: str, thread_id: str, owner: str, history=()):
        request = Verdict(safe=True, backend="replay", stage="request")
        if message == "evidence":
            events = [TokenEvent("An unsupported draft. "), TokenEvent("More of it."), RetractEvent(""),
                      TokenEvent("A second try."), RetractEvent(EVIDENCE)]
            answer, documents = EVIDENCE, [GUIDE_PAGE]
            response = Verdict(safe=True, backend="replay", stage="response")
        else:
            events = [TokenEvent("A hateful draft."), RetractEvent(WITHHELD)]
            answer, documents = WITHHELD, []
            response = Verdict(safe=False, categories=["S10"], score=0.9, backend="replay", stage="response")
        for event in events:
            yield event
            await asyncio.sleep(0.3)
        yield DoneEvent(TurnResult(thread_id=thread_id, message_id=f"m-{message}", answer=answer,
                                   documents=documents, request_verdict=request, response_verdict=response,
                                   route=["safety_in", "generate", "safety_out"]))


@pytest.fixture(scope="module")
def replaying_server() -> Iterator[str]:
    agent = ReplayingAgent()

    async def starter(settings: AppSettings, stack: AsyncExitStack) -> ReplayingAgent:
        return agent

    with uvicorn_in_thread(create_app(AppSettings(api={"dev_mode": True}), starter=starter)) as url:
        yield url


def test_in_development_mode_the_page_ends_on_the_authoritative_answer_after_a_retraction(replaying_server, page):
    page.goto(replaying_server)
    expect(page.locator("#status")).to_contain_text("no key needed (development mode)")
    expect(page.locator("#key-panel")).to_be_hidden()

    page.evaluate(WATCH_STREAMING)
    send(page, "evidence")
    answer = page.locator("#messages > .msg.assistant").last
    expect(answer).to_have_attribute("data-state", "done")
    shown = page.evaluate("window.streamedTexts")
    assert "An unsupported draft. More of it." in shown and "A second try." in shown  # the draft was withdrawn
    assert answer.locator(".answer").text_content() == EVIDENCE
    expect(answer.locator(".answer a.cite")).to_have_attribute("href", "#src-m-evidence-1")
    expect(answer.locator(".source")).to_contain_text("starter_kb/chat-api.md > Streaming")
    expect(answer.locator(".note")).to_contain_text("Revised")

    send(page, "withheld")
    withheld = page.locator("#messages > .msg.refusal")
    expect(withheld.locator(".refusal-badge")).to_have_text("Answer withheld · S10 hate")
    assert withheld.locator(".answer").text_content() == WITHHELD
