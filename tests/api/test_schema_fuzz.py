"""Schema honesty: schemathesis drives a real server from its own /openapi.json, every check on, with a key.

Every phase runs (the schema's examples, boundary coverage, random fuzzing in both positive and negative
mode), bounded: at most 10 random cases an operation, deterministic, no shrinking. The examples and their
coverage variants run real turns through the whole graph; the server's profile keeps them short (4 new
tokens, one retrieved chunk of one sentence) without changing what any route does.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

from tests.api.conftest import API_KEY, Server, running_server

pytestmark = pytest.mark.slow

GENERATION_TIMEOUT_S = 60
FUZZ_PROFILE = {
    "model": {"max_new_tokens": 4},
    "retrieval": {"top_k": 1},
    "agent": {"agentic": {"excerpt_sentences": 1}},
    # No rate limit: schemathesis sends a few hundred requests a minute, all with one key.
    "api": {"api_keys": [API_KEY], "rate_limit_per_minute": 0, "max_message_chars": 500,
            "generation_timeout_s": GENERATION_TIMEOUT_S},
}
OPERATIONS = 7  # health (2), chat (2), OpenAI-compatible (2), metrics


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("fuzz-server"), FUZZ_PROFILE) as running:
        yield running


def test_the_service_keeps_to_its_own_schema(fuzz_server: Server, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text("warnings = { fail-on = true }\n")  # e.g. an operation that no case got through
    junit = tmp_path / "junit.xml"
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", f"{fuzz_server.base_url}/openapi.json",
        "--checks", "all",
        # The service's own promise: a turn past api.generation_timeout_s is cancelled with a 504.
        "--max-response-time", str(GENERATION_TIMEOUT_S + 5),
        "--header", f"Authorization: Bearer {API_KEY}",
        "--max-examples", "10", "--generation-deterministic", "--no-shrink", "--workers", "1",
        "--request-timeout", str(GENERATION_TIMEOUT_S + 30),
        "--report", "junit", "--report-junit-path", str(junit),
    ]
    # In tmp_path: schemathesis keeps a crash cache in its working directory.
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    report = result.stdout + result.stderr

    assert result.returncode == 0, report[-8000:]
    cases = ElementTree.parse(junit).getroot().iter("testcase")
    assert len([case for case in cases if not case.findall("failure") + case.findall("error")]) == OPERATIONS
    assert re.search(r"Examples .*\n\s*✅ 3 passed", report), report  # the three turn routes' examples
    metrics = httpx.get(f"{fuzz_server.base_url}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).text
    answered = re.search(r'rag_turn_seconds_count\{outcome="answered"\} (\d+)', metrics)
    assert answered and int(answered.group(1)) >= 3  # the whole graph ran, generation included
    assert "Traceback" not in fuzz_server.log_path.read_text()
