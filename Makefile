# `make demo` and `make test` each create or reuse .venv, install what they need, and run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[test,experiments]"
	touch $@

demo: $(STAMP)
	$(BIN)/jaxmac eval --policy contention_free,aloha,random,oracle --ues 1-8 --episodes 2000 \
		--out results/scripted.json
	$(BIN)/python experiments/plot_throughput.py results/scripted.json --out results/scripted_throughput.png

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n auto tests

bench: $(STAMP)
	$(BIN)/python experiments/bench_env.py --out results/bench_env.json

clean:
	rm -rf $(VENV) results
