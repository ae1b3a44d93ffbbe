"""The container files, read statically; tests/test_container.py builds and starts the image for real."""

import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel

from configs.settings import ApiSettings, AppSettings

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


def test_compose_runs_stateless_api_replicas_on_shared_chroma_and_postgres() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"api", "chroma", "postgres", "nginx"}
    api = services["api"]
    env = api["environment"]
    assert api["deploy"]["replicas"] >= 2
    assert "volumes" not in api and "ports" not in api  # nothing local to a replica; clients go through nginx
    assert env["APP__VECTOR_STORE__SERVER_URL"] == "http://chroma:8000"
    assert env["APP__AGENT__CHECKPOINTER"] == "postgres"
    memory = urlparse(env["APP__AGENT__POSTGRES_URL"])
    postgres = services["postgres"]["environment"]
    assert (memory.hostname, memory.username, memory.path) == (
        "postgres", postgres["POSTGRES_USER"], f"/{postgres['POSTGRES_DB']}",
    )
    # The same variable sets the server's password and the replicas' URL.
    assert memory.password == "${POSTGRES_PASSWORD}"
    assert postgres["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:")
    assert {name: dep["condition"] for name, dep in api["depends_on"].items()} == {
        "chroma": "service_healthy", "postgres": "service_healthy",
    }
    assert services["nginx"]["depends_on"]["api"]["condition"] == "service_healthy"
    # Every service is health-checked: the api by the image's HEALTHCHECK, the others in the compose file.
    assert all("healthcheck" in services[name] for name in ("chroma", "postgres", "nginx"))
    healthcheck = DOCKERFILE.split("\nHEALTHCHECK ", 1)[1].split("\nCMD ", 1)[0]
    assert "/readyz" in healthcheck and "${APP__API__PORT}" in healthcheck


def test_nginx_balances_over_the_api_replicas_without_buffering_streams() -> None:
    nginx = COMPOSE["services"]["nginx"]
    source, target = nginx["volumes"][0].removesuffix(":ro").split(":")
    assert target == "/etc/nginx/nginx.conf"
    conf = (REPO_ROOT / source).read_text()
    directives = dict(re.findall(r"^\s*(\w+) ([^;{]+);", conf, flags=re.MULTILINE))
    upstream, body = re.search(r"upstream (\w+) \{(.*?)\}", conf, flags=re.DOTALL).groups()
    host, port, options = re.search(r"server (\S+):(\d+)([^;]*);", body).groups()
    assert host == "api" and host in COMPOSE["services"]
    # Re-resolved through Docker's DNS: replicas scaled or restarted later are found without a reload.
    assert "resolve" in options.split() and directives["resolver"].startswith("127.0.0.11 ")
    assert port in instruction("EXPOSE") and f"APP__API__PORT={port}" in DOCKERFILE
    assert directives["proxy_pass"] == f"http://{upstream}"
    assert directives["proxy_buffering"] == "off" and directives["proxy_http_version"] == "1.1"
    published = {mapping.split(":")[1] for mapping in nginx["ports"]}
    assert published == {directives["listen"]}
    # nginx must not cut what the service itself limits and explains (413, 504).
    api = ApiSettings()
    assert _size_bytes(directives["client_max_body_size"]) > api.max_body_bytes
    assert int(directives["proxy_read_timeout"].removesuffix("s")) > api.generation_timeout_s


def _size_bytes(size: str) -> int:
    units = {"k": 1024, "m": 1024**2}
    return int(size[:-1]) * units[size[-1].lower()] if size[-1].lower() in units else int(size)


def test_compose_volumes_and_build_args_exist() -> None:
    services = COMPOSE["services"]
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in COMPOSE["volumes"] or (REPO_ROOT / source).is_file(), (name, mount)
    build_args = {line.split("=")[0] for line in instruction("ARG")}
    assert set(services["api"]["build"]["args"]) <= build_args


def test_the_image_installs_the_postgres_extra() -> None:
    # EXTRAS defaults to postgres; a CUDA build adds gpu (--build-arg EXTRAS=postgres,gpu)
    assert "EXTRAS=postgres" in instruction("ARG")
    assert any('".[${EXTRAS}]"' in line for line in instruction("RUN"))


def test_env_names_in_container_files_are_real_settings() -> None:
    text = DOCKERFILE + (REPO_ROOT / "docker-compose.yml").read_text()
    names = set(re.findall(r"APP__([A-Z_]+)", text))
    assert "API__API_KEYS" in names  # the service binds 0.0.0.0 in the image: compose must pass keys
    for name in names:
        model: type[BaseModel] = AppSettings
        *sections, key = name.lower().split("__")
        for section in sections:
            assert section in model.model_fields, name
            model = model.model_fields[section].annotation
        assert key in model.model_fields, name
