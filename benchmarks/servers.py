"""Servers the benchmarks start in their own processes on 127.0.0.1 (this project's service, a vLLM server)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from configs.settings import PROJECT_ROOT


class Server:
    """A server in its own process on 127.0.0.1, ready when `ready_path` answers 200."""

    def __init__(self, command: list[str], port: int, log: Path, ready_path: str,
                 env: dict[str, str] | None = None, cpus: set[int] | None = None) -> None:
        """`cpus`: the only CPUs the server (every thread it starts) may run on."""
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = ready_path
        self.log = log.open("w")
        self.process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        if cpus:  # before the interpreter has started any thread: the threads it starts inherit the set
            os.sched_setaffinity(self.process.pid, cpus)

    @classmethod
    def service(cls, config: Path, port: int, log: Path, cpus: set[int] | None = None) -> Server:
        """This project's service: `python -m api --dev`."""
        return cls([sys.executable, "-m", "api", "--dev", "--config", str(config)], port, log, "/readyz",
                   cpus=cpus)

    async def wait_ready(self, client: httpx.AsyncClient, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.process.args[:3]} exited with {self.process.returncode}; "
                                   f"see {self.log.name}")
            try:
                if (await client.get(f"{self.url}{self.ready_path}")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(1.0)
        raise TimeoutError(f"{self.process.args[:3]} was not ready in {timeout_s:.0f} s; see {self.log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def env_pair(text: str) -> tuple[str, str]:
    """One `--vllm-env KEY=VALUE`."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    return key, value


VLLM_MODEL_NAME = "ulma"


def vllm_server_command(python: str, model: Path, port: int, *, gpu_memory_utilization: float, max_num_seqs: int,
                        extra: Sequence[str] = ()) -> list[str]:
    """vLLM's OpenAI-compatible server on a bf16 model folder, serving it as `VLLM_MODEL_NAME`."""
    return [
        python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model), "--served-model-name", VLLM_MODEL_NAME,
        "--host", "127.0.0.1", "--port", str(port), "--dtype", "bfloat16", "--max-model-len", "4096",
        "--max-num-seqs", str(max_num_seqs), "--gpu-memory-utilization", str(gpu_memory_utilization),
        *extra,
    ]
