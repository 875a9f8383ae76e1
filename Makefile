# The front door: `make help` lists what you can do.
PYTHON ?= python3
# The CPU build; set TORCH_SPEC (e.g. torch==2.13.0 with a CUDA index) for a GPU machine.
# An already installed torch is kept.
TORCH_SPEC ?= torch==2.13.0
EXP ?= demo
DIR ?= multirun/$(EXP)
STAMP := .cache/installed.stamp

.DEFAULT_GOAL := help
.PHONY: help install demo study forecast pretrain report analyze recommend predict export bench samples run test test-slow smoke-real smoke-installed lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP)  ## install the project and its tools into the current Python (torch pinned first)

$(STAMP): pyproject.toml
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -e ".[dev]" --config-settings editable_mode=compat  # compat: Hydra finds the hydra_plugins folder
	@mkdir -p $(dir $@) && touch $@

demo: $(STAMP)  ## the main job: the paper's whole study on simulated data, with its report (CPU, about 3.5 min on 2 cores)
	$(PYTHON) -m unet_transfer study demo

study: $(STAMP)  ## a whole study: make study EXP=paper_busi [ARGS="trainer.accelerator=gpu"]
	$(PYTHON) -m unet_transfer study $(EXP) $(ARGS)

forecast: $(STAMP)  ## the study's answer forecast in minutes, checked against the study if run: make forecast EXP=demo
	$(PYTHON) -m unet_transfer forecast $(EXP) $(ARGS)

pretrain: $(STAMP)  ## the paper's pretraining on natural images: make pretrain [ARGS="dataset=ecssd"]
	$(PYTHON) -m unet_transfer train experiment=pretrain_natural $(ARGS)

report: $(STAMP)  ## tables, figures and statistics of a study folder: make report DIR=multirun/paper_busi
	$(PYTHON) -m unet_transfer report $(DIR)

analyze: $(STAMP)  ## per-block analysis of a finished study (analysis.md, Fig. 5): make analyze DIR=multirun/demo
	$(PYTHON) -m unet_transfer analyze $(DIR)

CKPT ?= $(DIR)/recommended/model.pt
recommend: $(STAMP)  ## train a study's best configuration on all its images, with a model card: make recommend DIR=multirun/demo
	$(PYTHON) -m unet_transfer recommend $(DIR) $(ARGS)

predict: $(STAMP)  ## segment images: make predict [CKPT=$(DIR)/recommended/model.pt] IN=images OUT=predicted [MASKS=masks]
	$(PYTHON) -m unet_transfer predict $(CKPT) $(IN) $(OUT) $(if $(MASKS),--masks $(MASKS)) $(ARGS)

export: $(STAMP)  ## ONNX and TorchScript files of a checkpoint, checked against PyTorch: make export [CKPT=...]
	$(PYTHON) -m unet_transfer export $(CKPT) $(ARGS)

bench: $(STAMP)  ## speed and memory benchmark on this machine: bench.json and a table (about 9 min on 2 cores)
	$(PYTHON) -m unet_transfer bench --out bench.json

samples: $(STAMP)  ## samples.png: simulated ultrasound, X-ray and natural images beside the real samples
	$(PYTHON) -m unet_transfer samples --out samples.png

run: $(STAMP)  ## one quick fine-tuning run on the synthetic default: make run [ARGS="freeze=contracting"]
	$(PYTHON) train.py $(ARGS)

test: $(STAMP)  ## the test suite (fast tests; about 5 minutes on 2 cores)
	$(PYTHON) -m pytest -q

test-slow: $(STAMP)  ## the slow tests too
	$(PYTHON) -m pytest -q -m "slow or not slow"

SHARED ?= ../shared/data
SMOKE_SETTINGS := trainer.max_epochs=1 trainer.enable_progress_bar=false dataset.image_size=64 resume=false
SMOKE := $(PYTHON) train.py $(SMOKE_SETTINGS)
smoke-real: $(STAMP)  ## one tiny fine-tuning on each real sample set in ../shared/data (BUSI, ECSSD, lungs), then predict with them
	$(SMOKE) dataset=busi dataset.root=$(SHARED)/busi_sample/Dataset_BUSI_with_GT hydra.run.dir=outputs/smoke/busi save_weights=outputs/smoke/busi/model.pt
	$(PYTHON) train.py -m $(SMOKE_SETTINGS) model=flexunet dataset=busi dataset.root=$(SHARED)/busi_sample/Dataset_BUSI_with_GT freeze=shallow_to_deep k=1,2,3 hydra.sweep.dir=outputs/smoke/busi_flexunet
	$(SMOKE) dataset=ecssd dataset.root=$(SHARED)/ecssd_sample hydra.run.dir=outputs/smoke/ecssd
	$(SMOKE) dataset=folder dataset.root=$(SHARED)/lung_sample hydra.run.dir=outputs/smoke/lungs save_weights=outputs/smoke/lungs/model.pt
	$(PYTHON) -c "import json; [print(n, json.load(open(f'outputs/smoke/{n}/metrics.json'))['n_images'], 'held-out images') for n in ('busi', 'ecssd', 'lungs')]"
	$(PYTHON) tests/smoke_predict.py $(SHARED) outputs/smoke

VENV := .cache/venv-installed
smoke-installed:  ## a fresh venv, torch pinned, then `pip install .` (not editable) and the demo study from an empty folder
	rm -rf $(VENV) && $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(VENV)/bin/python -m pip install -q .
	work=$$(mktemp -d) && cd $$work && $(CURDIR)/$(VENV)/bin/unet-transfer study demo && \
	  test -s multirun/demo/summary.md && test -s multirun/demo/dice_vs_blocks.png && echo "installed demo study: $$work/multirun/demo"

lint: $(STAMP)  ## ruff
	$(PYTHON) -m ruff check .

clean:  ## remove outputs, sweeps, caches and logs (not data/ or checkpoints/)
	rm -rf outputs multirun .cache lightning_logs wandb .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
