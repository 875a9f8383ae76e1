# The front door: `make help` lists what you can do.
PYTHON ?= python3
# The CPU build; set TORCH_SPEC (e.g. torch==2.13.0 with a CUDA index) for a GPU machine.
# An already installed torch is kept.
TORCH_SPEC ?= torch==2.13.0
EXP ?= demo
DIR ?= multirun/$(EXP)
STAMP := .cache/installed.stamp

.DEFAULT_GOAL := help
.PHONY: help install demo test test-slow lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP)  ## install the project and its tools into the current Python (torch pinned first)

$(STAMP): pyproject.toml
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -e ".[dev]"
	@mkdir -p $(dir $@) && touch $@

demo: $(STAMP)  ## the main job: one quick fine-tuning run on the embedded synthetic data (CPU)
	$(PYTHON) train.py

test: $(STAMP)  ## the test suite (fast tests; about 5 minutes on 2 cores)
	$(PYTHON) -m pytest -q

test-slow: $(STAMP)  ## the slow tests too
	$(PYTHON) -m pytest -q -m "slow or not slow"

lint: $(STAMP)  ## ruff
	$(PYTHON) -m ruff check .

clean:  ## remove outputs, sweeps, caches and logs (not data/ or checkpoints/)
	rm -rf outputs multirun .cache lightning_logs wandb .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
