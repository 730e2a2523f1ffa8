# The README's two commands are `make run` and `make test`; everything else is for developers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAMPLE := build/sample
# Tests and CI never touch the real user data dir.
export RADVIEW_DATA_DIR ?= $(CURDIR)/build/userdata

.PHONY: run test test-headless lint bench train train-smoke clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The tests include training/tests (parity of every model's ONNX export with PyTorch, the
# training smoke run), so the test install has the train extra (CPU torch 2.13.0).
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,train]"
	touch $@ $(VENV)/.installed

## run: install, write the sample study if missing, and open it
run: $(VENV)/.installed
	$(BIN)/radview sample --out $(SAMPLE) --if-missing
	$(BIN)/radview view $(SAMPLE)/dicom --labels $(SAMPLE)/truth/labels.nii.gz

## test: install with test extras and run the whole suite (lint, architecture, tests)
test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest
	$(MAKE) test-headless

## test-headless: the non-GUI tests with Qt made unimportable, as napari's CI does
test-headless: $(VENV)/.installed-test
	RADVIEW_BLOCK_QT=1 RADVIEW_REQUIRE_TOOLS= $(BIN)/python -m pytest -m "not gui" -q -p no:cacheprovider -p no:pytest-qt tests/core tests/io tests/cli tests/inference tests/report tests/training

## bench: speed and memory benchmarks against named peers; JSON results in build/bench
bench: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks.load --out build/bench/load.json
	$(BIN)/python -m benchmarks.render --out build/bench/render.json
	$(BIN)/python -m benchmarks.soak --out build/bench/soak.json
	$(BIN)/python -m benchmarks.responsiveness --out build/bench/responsiveness.json
	$(BIN)/python -m benchmarks.report --out build/bench/report.json
	$(BIN)/python -m benchmarks.inference --out build/bench/inference.json

## train: rebuild every shipped model from scratch (data, search, training, export, held-out
## evaluation, model cards); resumes where it stopped. About 110 min on 2 idle cores.
train: $(VENV)/.installed-test
	$(BIN)/python -m training.build_all

## train-smoke: every step of `make train` on three tiny phantoms for a few steps (minutes)
train-smoke: $(VENV)/.installed-test
	rm -rf build/train-smoke
	$(BIN)/python -m training.build_all --smoke

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf build $(VENV)
