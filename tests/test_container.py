"""The container image, built from this repository and started for real.

podman builds the Dockerfile (chroot isolation) on a local Debian bookworm base made by mmdebstrap, so
no image registry is needed; `buildah run` starts the image's command, sharing the host's network
(`podman run` cannot set rlimits in some sandboxes). Needs root and podman, buildah and mmdebstrap
(`.ci/run` installs them with apt). The base image and the storage live under ~/.cache, outside the
repository, so a rerun skips mmdebstrap; the built image and its container are removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import free_port, wait_until_ready
from tests.api.test_server import BENIGN, HARMFUL

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aligned-rag" / "container-ci"
STORAGE = ["--root", str(CACHE / "storage"), "--runroot", str(CACHE / "run")]
BASE_IMAGE = "localhost/aligned-rag-ci-base:bookworm"
BASE_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
# Where this machine's CA bundle is (a TLS-inspecting proxy's CA included); mounted into the build so
# pip inside trusts what pip outside trusts. On an ordinary machine it equals the base image's own.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# PyPI's torch (the CUDA build, which runs on CPU too): the CPU-only index is not reachable here.
TORCH_INDEX_URL = "https://pypi.org/simple"
API_KEY = "container-key-5d1e"


@dataclass(frozen=True)
class Image:
    name: str
    config: dict
    healthcheck: dict
    size_bytes: int
    build_s: float


def tool(name: str, *args: str) -> subprocess.CompletedProcess:
    """podman or buildah on the test's own storage; a failure shows the command's output, error first."""
    result = subprocess.run([name, *STORAGE, *args], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        # The error is in stderr's last lines; a long build log before it would push it out of a truncated report.
        pytest.fail(
            f"{name} {' '.join(args)} exited {result.returncode}; stderr ends:\n{result.stderr[-2000:]}\n"
            f"stdout ends:\n{result.stdout[-4000:]}"
        )
    return result


def ensure_base_image() -> None:
    """A minimal Debian bookworm with Python, built once by mmdebstrap and kept in the cache."""
    if subprocess.run(["podman", *STORAGE, "image", "exists", BASE_IMAGE], check=False).returncode == 0:
        return
    rootfs = CACHE / "bookworm-minbase.tar"
    if not rootfs.is_file():
        # mmdebstrap picks the output format by the file's extension.
        partial = rootfs.with_suffix(f".partial-{os.getpid()}.tar")
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                f"--include={BASE_PACKAGES}",
                "bookworm",
                str(partial),
            ],
            check=True,
        )
        partial.rename(rootfs)
    tool("podman", "import", str(rootfs), BASE_IMAGE)


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    missing = [name for name in ("podman", "buildah", "mmdebstrap") if shutil.which(name) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install podman buildah mmdebstrap; .ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("building with chroot isolation needs root")
    CACHE.mkdir(parents=True, exist_ok=True)
    ensure_base_image()
    name = f"localhost/aligned-rag:ci-{uuid.uuid4().hex[:8]}"
    ca_mount = [f"--volume={HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"] if HOST_CA_BUNDLE.is_file() else []
    started = time.monotonic()
    # --layers=false: one commit per stage, nothing cached to clean up; docker format keeps HEALTHCHECK.
    tool(
        "podman",
        "build",
        "--isolation=chroot",
        "--format=docker",
        "--layers=false",
        *ca_mount,
        f"--build-arg=BASE_IMAGE={BASE_IMAGE}",
        f"--build-arg=TORCH_INDEX_URL={TORCH_INDEX_URL}",
        "--tag",
        name,
        str(REPO_ROOT),
    )
    build_s = time.monotonic() - started
    try:
        inspected = json.loads(tool("podman", "image", "inspect", name).stdout)[0]
        yield Image(name, inspected["Config"], inspected.get("Healthcheck", {}), inspected["Size"], build_s)
    finally:
        tool("podman", "rmi", "--force", name)


@pytest.fixture
def container(image: Image) -> Iterator[str]:
    name = tool("buildah", "from", "--pull-never", image.name).stdout.strip()
    try:
        yield name
    finally:
        tool("buildah", "rm", name)


def listener_uid(port: int) -> int:
    """The uid of the process listening on the port (chroot isolation shares the host's network)."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    inodes = {row[9] for row in rows if row[1].endswith(f":{port:04X}") and row[3] == "0A"}
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes:
                return fd.parents[1].stat().st_uid
        except OSError:  # processes and descriptors come and go while we look
            continue
    pytest.fail(f"no process listens on port {port}")


def test_image_metadata_matches_the_compose_file(image: Image) -> None:
    assert image.config["User"] == "app"
    assert "8000/tcp" in image.config["ExposedPorts"]
    assert "/data" in image.config["Volumes"]
    assert any("/readyz" in part for part in image.healthcheck.get("Test", [])), image.healthcheck
    assert image.config["Cmd"] == ["python", "-m", "api"]


def test_image_serves_a_chat_and_refuses_harm_as_a_non_root_user(
    image: Image, container: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "container.log"
    app_uid = int(tool("buildah", "run", "--isolation=chroot", container, "--", "id", "-u", "app").stdout)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                "buildah",
                *STORAGE,
                "run",
                "--isolation=chroot",
                f"--env=APP__API__PORT={port}",
                f'--env=APP__API__API_KEYS=["{API_KEY}"]',
                container,
                "--",
                *image.config["Cmd"],
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        ready_s = wait_until_ready(process, base_url, log_path)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=180) as client:
            unauthenticated = client.post("/v1/chat", json={"message": BENIGN}, headers={"Authorization": ""})
            chat = client.post("/v1/chat", json={"message": BENIGN})
            refused = client.post("/v1/chat", json={"message": HARMFUL})
        server_uid = listener_uid(port)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    assert unauthenticated.status_code == 401
    assert chat.status_code == 200, chat.text
    answer = chat.json()
    assert answer["answer"].strip() and not answer["safety"]["refused"]
    assert any("chat-api" in source["source"] for source in answer["sources"])  # the baked-in starter KB
    assert refused.status_code == 200, refused.text
    assert refused.json()["safety"]["refused"] and refused.json()["route"] == ["safety_in", "refuse"]
    assert server_uid == app_uid != 0
    with capsys.disabled():
        print(
            f"\ncontainer image: {image.size_bytes / 1e9:.2f} GB, built in {image.build_s:.0f} s, "
            f"ready {ready_s:.0f} s after start (uid {app_uid})"
        )
