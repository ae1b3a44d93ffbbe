"""The container files, read statically; tests/test_container.py builds and starts the image for real."""

import re
import tomllib
from pathlib import Path

import yaml

from configs.settings import AppSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def instruction(name: str) -> list[str]:
    """The arguments of every `NAME ...` line of the Dockerfile."""
    return re.findall(rf"^{name} (.+)$", DOCKERFILE, flags=re.MULTILINE)


def test_dockerfile_is_multi_stage_and_copies_every_package() -> None:
    stages = re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE, flags=re.MULTILINE)
    assert stages == ["python-base", "build", "runtime"]
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = [
        pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    for package in packages:
        assert f"{package} {package}" in instruction("COPY") and (REPO_ROOT / package).is_dir(), package
    # The runtime stage takes only the venv and the converted model from the build stage: no source tree.
    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    assert re.findall(r"^COPY (.+)$", runtime, flags=re.MULTILINE) == [
        "--from=build /opt/venv /opt/venv",
        "--from=build /opt/models /opt/models",
    ]
    assert instruction("USER") == ["app"] and instruction("CMD") == ['["python", "-m", "api"]']


def test_compose_runs_the_api_against_a_chroma_server() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"api", "chroma"}
    api = services["api"]
    assert api["environment"]["APP__VECTOR_STORE__SERVER_URL"] == "http://chroma:8000"
    assert api["depends_on"]["chroma"]["condition"] == "service_healthy"
    assert "healthcheck" in services["chroma"]  # the api's health check is the image's HEALTHCHECK
    healthcheck = DOCKERFILE.split("\nHEALTHCHECK ", 1)[1].split("\nCMD ", 1)[0]
    assert "/readyz" in healthcheck and "${APP__API__PORT}" in healthcheck


def test_compose_volumes_ports_and_build_args_exist_in_the_image() -> None:
    api = COMPOSE["services"]["api"]
    declared_volumes = {volume.strip('"') for line in instruction("VOLUME") for volume in line.split()}
    for mount in api["volumes"]:
        volume, target = mount.split(":")
        assert target in declared_volumes and volume in COMPOSE["volumes"]
    exposed = {port for line in instruction("EXPOSE") for port in line.split()}
    assert {mapping.split(":")[1] for mapping in api["ports"]} <= exposed
    build_args = {line.split("=")[0] for line in instruction("ARG")}
    assert set(api["build"]["args"]) <= build_args


def test_env_names_in_container_files_are_real_settings() -> None:
    text = DOCKERFILE + (REPO_ROOT / "docker-compose.yml").read_text()
    names = set(re.findall(r"APP__([A-Z_]+?)__([A-Z_]+)", text))
    assert ("API", "API_KEYS") in names  # the service binds 0.0.0.0 in the image: compose must pass keys
    for name in names:
        section, key = (part.lower() for part in name)
        assert section in AppSettings.model_fields, section
        assert key in AppSettings.model_fields[section].annotation.model_fields, key
