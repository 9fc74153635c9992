# One task file; CI runs `make test` (via .ci/run). Everything installs from the package registries.
PY ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export OPENBLAS_NUM_THREADS := 1

.PHONY: help setup models models-llm models-embeddinggemma browser ingest run test test-fast lint typecheck bench bench-ingest bench-retrieval bench-hostile bench-eval bench-answer bench-refusal bench-scale bench-serve clean

help:
	@echo "make run        - set up everything, ingest data/, serve the chat page and API"
	@echo "make test       - set up everything, run all tests (real-model tests included)"
	@echo "make test-fast  - tests that need no model files"
	@echo "make lint | typecheck | bench | clean"

$(PYTHON):
	$(PY) -m venv $(VENV)

# torch first and pinned: the CPU wheel lies on disk; any other spec pulls a CUDA build of several GB
$(STAMP): pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install --quiet torch==2.13.0
	CMAKE_ARGS="-DGGML_NATIVE=ON" $(PYTHON) -m pip install --quiet -e '.[dev,eval,local]'
	touch $(STAMP)

setup: $(STAMP)

models: setup
	$(PYTHON) -m rag models

models-llm: setup
	$(PYTHON) -m rag models --llm

# the default embedding model and its ONNX export (`make models` provisions it as configured; the tests need
# it whatever RAG_MODELS_EMBEDDING says)
models-embeddinggemma: setup
	$(PYTHON) -m rag models --embedding embeddinggemma-300m

ingest: models
	$(PYTHON) -m ingest data/

# the chat page answers with the local LLM; RAG_LLM_BACKEND in the environment or .env overrides it
# (an exported variable would outrank .env, so .env's value is read here first)
run: models-llm ingest
	backend=$${RAG_LLM_BACKEND:-$$(sed -n 's/^RAG_LLM_BACKEND=//p' .env 2>/dev/null | tail -n 1 | tr -d "\"' ")}; \
	RAG_LLM_BACKEND=$${backend:-local} $(PYTHON) app.py

# Debian's chromium drives the chat page in the browser tests (Playwright's own browser download cannot work offline)
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

browser: $(CHROMIUM)

test: models-llm models-embeddinggemma browser
	$(PYTHON) -m pytest

test-fast: setup
	$(PYTHON) -m pytest -m "not slow and not llm and not browser"

lint: setup
	$(VENV)/bin/ruff check rag ingest eval api tests app.py
	$(VENV)/bin/ruff format --check rag ingest eval api tests app.py

typecheck: setup
	$(VENV)/bin/mypy rag ingest eval api app.py

bench: bench-ingest bench-retrieval bench-hostile

bench-ingest: models
	$(PYTHON) -m eval bench-ingest

bench-retrieval: models
	$(PYTHON) -m eval bench-retrieval

# crafted files (regex bombs, deep nesting, a PDF bomb) next to normal ones; the fake embedder, no model files
bench-hostile: setup
	$(PYTHON) -m eval bench-hostile

bench-eval: models
	$(PYTHON) -m eval bench-korquad

bench-answer: models-llm
	$(PYTHON) -m eval bench-answer

bench-refusal: models
	$(PYTHON) -m eval bench-refusal

# embedded engines at 10k / 100k / 1M chunks (hours on 2 cores; ~25 GB of disk at 1M, under storage/bench)
bench-scale: models
	$(PYTHON) -m eval bench-scale

# the running app under concurrent clients (extractive; the local LLM too when `make models-llm` provided it)
bench-serve: ingest
	$(PYTHON) -m eval bench-serve

clean:
	rm -rf storage reports .pytest_cache .mypy_cache .ruff_cache
