# facecast — every command the README names. `make run` and `make test` work on a fresh clone.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
TRITON_VENV ?= .venv-triton
PY := $(VENV)/bin/python
FACECAST := $(VENV)/bin/facecast
APP_PORT ?= 8501
DATA ?= data
RUNS ?= runs
WEIGHTS := weights/expression_encoder-cpu.pt
export FACECAST_TRITON_ENV ?= $(abspath $(TRITON_VENV))

.PHONY: setup run serve stop test data emoji train loso evaluate models repository repository-gpu bench demo triton-env clean

## Environments ###################################################################################################
setup: $(VENV)/.installed $(TRITON_VENV)/.installed repository demo

$(VENV)/.installed: pyproject.toml
	@echo "==> app, training and test environment ($(VENV))"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	@# torch first with its exact pin: the local CPU wheel. A looser requirement pulls GBs of CUDA wheels.
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e ".[training,test]"
	touch $@

triton-env: $(TRITON_VENV)/.installed
$(TRITON_VENV)/.installed: requirements-triton.txt
	@echo "==> Triton server environment ($(TRITON_VENV)): nvidia-pytriton's tritonserver + onnxruntime, numpy<2"
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q --upgrade pip
	$(TRITON_VENV)/bin/pip install -q -r requirements-triton.txt
	touch $@

## Serving ########################################################################################################
repository: model_repository/expression_encoder/config.pbtxt
model_repository/expression_encoder/config.pbtxt: $(WEIGHTS) $(VENV)/.installed export/*.py export/python_backend/model.py training/networks/*.py
	@echo "==> Triton model repository (CPU flavour) from $(WEIGHTS)"
	$(PY) -m export.triton_repository --weights $(WEIGHTS) --out model_repository

repository-gpu: $(VENV)/.installed
	$(PY) -m export.triton_repository --weights $(WEIGHTS) --out model_repository_gpu --flavour gpu
	@echo "now build the TensorRT plans on a GPU host: export/tensorrt/build_plans.sh model_repository_gpu"

serve: setup
	$(FACECAST) serve --detach --reuse

stop:
	$(FACECAST) stop

demo: $(VENV)/.installed
	$(PY) -m training.data.demo

run: setup
	$(FACECAST) serve --detach --reuse
	@echo "==> facecast app on http://127.0.0.1:$(APP_PORT) (Ctrl-C stops the app; 'make stop' stops Triton)"
	$(VENV)/bin/streamlit run app/main.py --server.address 127.0.0.1 --server.port $(APP_PORT) \
	    --server.headless true --browser.gatherUsageStats false

## Tests ##########################################################################################################
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

## Models: data → training → evaluation → export (rebuilds the shipped weights from scratch) ######################
data: $(VENV)/.installed
	$(PY) -m training.data.build --out $(DATA)

# Only the licensed emoji (npm pack; ~140 MB of tarballs, cached in $(DATA)/cache/npm).
emoji: $(VENV)/.installed
	$(PY) -m training.data.emoji --out $(DATA)/emoji

train: $(VENV)/.installed
	$(PY) -m training.train_expression --network expression_encoder-cpu --out $(RUNS)/expression_encoder-cpu \
	    --train $(DATA)/synthetic/train/manifest.csv --val $(DATA)/synthetic/val/manifest.csv
	cp $(RUNS)/expression_encoder-cpu/best.pt $(WEIGHTS)

# Leave-one-style-out: four models each without one style, and a reference on all four, all with the same shorter
# schedule (3 epochs), so the drop measures generalisation to an unseen style, not a difference in training.
LOSO_ARGS = --network expression_encoder-cpu --epochs 3 --time-budget-s 600 \
    --train $(DATA)/synthetic/train/manifest.csv --val $(DATA)/synthetic/val/manifest.csv
loso: $(VENV)/.installed
	$(PY) -m training.train_expression $(LOSO_ARGS) --out $(RUNS)/loso/all-styles
	for style in realistic cartoon anime stylized_3d; do \
	    $(PY) -m training.train_expression $(LOSO_ARGS) --exclude-style $$style --out $(RUNS)/loso/without-$$style; \
	done

evaluate: $(VENV)/.installed
	$(PY) -m training.evaluate_expression --model $(WEIGHTS) --synthetic-test $(DATA)/synthetic/test/manifest.csv \
	    --emoji $(DATA)/emoji/manifest.csv --loso $(RUNS)/loso --runs $(RUNS)/expression_encoder-cpu \
	    --out docs/results-expression.md

models: data train loso evaluate repository

## Benchmarks (write docs/benchmarks.md) ##########################################################################
bench: setup
	$(PY) -m benchmarks.serving

clean:
	rm -rf model_repository/expression_encoder var/run
