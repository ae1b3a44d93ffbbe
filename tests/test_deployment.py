"""The container files: no Docker engine runs here, so check what can be checked statically."""

import re
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_compose_runs_the_api_against_a_chroma_server() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"api", "chroma"}
    api_env = services["api"]["environment"]
    assert api_env["APP__VECTOR_STORE__SERVER_URL"] == "http://chroma:8000"
    assert services["api"]["depends_on"]["chroma"]["condition"] == "service_healthy"


def test_dockerfile_is_multi_stage_and_copies_every_package() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, flags=re.MULTILINE)
    assert stages == ["python-base", "build", "runtime"]
    for package in ("agents", "retrieval", "finetune", "api", "ingest", "configs"):
        assert f"COPY {package} {package}" in dockerfile
        assert (REPO_ROOT / package).is_dir()
    assert 'CMD ["python", "-m", "api"]' in dockerfile


def test_env_names_in_container_files_are_real_settings() -> None:
    from configs.settings import AppSettings

    text = (REPO_ROOT / "Dockerfile").read_text() + (REPO_ROOT / "docker-compose.yml").read_text()
    for name in set(re.findall(r"APP__([A-Z_]+?)__([A-Z_]+)", text)):
        section, key = (part.lower() for part in name)
        assert section in AppSettings.model_fields, section
        assert key in AppSettings.model_fields[section].annotation.model_fields, key
