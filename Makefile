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

# Trains Sym. MAPPO and Sym. MADDPG (0.74M and 1.54M env steps: about 1 and 4 minutes of training
# on a 2-core CPU, 12,580 and 6,564 env-steps/s in a fresh clone on 2026-12-02) and a tiny LLM4MAC
# on this machine's CPU (--resume: a rerun continues or just re-evaluates), then evaluates them
# beside contention_free and oracle at 1-8 UEs. The whole demo took 12.5-16 minutes in a fresh
# clone there, installation included (README, "Two commands").
# The LLM4MAC step is the llm4mac-cpu preset's PPO from the drawn tiny T5 with the Abl. SIE prompts
# (--no-sie, bare numbers), 60 updates in 1-3.5 minutes: the one setting in which it had learned
# from scratch within minutes, and an unstable one (README, "What the demo trains": near random's
# level on three seeds with the code since 2026-12-02; with the paper's SIE prompts the drawn tiny
# T5 does not learn, and experiments/llm4mac_from_llm_pt.py starts it from LLM-PT instead). Without
# identities in its prompts its UEs break their symmetry by sampling: it is evaluated sampled.
# --resume where the run directory already holds a run (--resume on a directory without one is an error)
resume = $(if $(wildcard $(1)/config.json),--resume,)

demo: $(STAMP)
	$(BIN)/jaxmac eval --policy contention_free,aloha,random,oracle --ues 1-8 --episodes 2000 \
		--out results/scripted.json
	$(BIN)/python experiments/plot_throughput.py results/scripted.json --out results/scripted_throughput.png
	$(BIN)/jaxmac train $(call resume,results/runs/mappo) --algo mappo --hidden 64 --ues 1-4 --episodes 512 --updates 60 --lr 1e-3 \
		--eval-ues 1-4 --eval-episodes 200 --out results/runs/mappo
	$(BIN)/jaxmac train $(call resume,results/runs/maddpg) --algo maddpg --ues 1-4 --episodes 64 --updates 1000 --chunk 100 \
		--eval-ues 1-4 --eval-episodes 200 --out results/runs/maddpg
	$(BIN)/jaxmac train $(call resume,results/runs/llm4mac) --preset llm4mac-cpu --no-sie --updates 60 --chunk 10 \
		--eval-ues 1-4 --eval-episodes 50 --no-greedy --out results/runs/llm4mac
	$(BIN)/jaxmac eval --policy contention_free,oracle --checkpoint results/runs/mappo \
		--checkpoint results/runs/maddpg --ues 1-8 \
		--episodes 500 --out results/trained.json
	$(BIN)/jaxmac eval --policy random --checkpoint results/runs/llm4mac --no-greedy --ues 1-8 \
		--out results/trained_llm.json
	$(BIN)/python experiments/plot_throughput.py results/trained.json results/trained_llm.json \
		--out results/trained_throughput.png
	$(BIN)/python experiments/plot_learning.py results/runs/mappo results/runs/maddpg results/runs/llm4mac \
		--out results/learning.png

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n auto --dist worksteal tests

bench: $(STAMP)
	$(BIN)/python experiments/bench_env.py --out results/bench_env.json

clean:
	rm -rf $(VENV) results
