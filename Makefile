# Two commands do everything on a fresh machine:
#   make demo   set up, then run the main job
#   make test   set up, then run the whole test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.conchshell-installed
DATA := data/standin

# torchaudio pins torch exactly; this triple installs and works together.
TORCH_PINS := torch==2.9.1 torchvision==0.24.1 torchaudio==2.9.1

.PHONY: setup system-deps data demo test lint docs clean

setup: $(STAMP)

system-deps:
	bash scripts/system-deps.sh

$(STAMP): pyproject.toml scripts/system-deps.sh
	bash scripts/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e ".[dev,data,transcription]"
	# tinysoundfont's own dependency list pulls PortAudio bindings we never use.
	$(BIN)/python -m pip install -q --no-deps "tinysoundfont>=0.3"
	# basic-pitch's wheel asks for TensorFlow on Linux (Python 3.11); we only run its ONNX
	# model, whose imports the [transcription] extra installs.
	$(BIN)/python -m pip install -q --no-deps "basic-pitch==0.4.0"
	touch $(STAMP)

data: setup
	$(BIN)/conchshell data build --out $(DATA)

# The main job: the shipped small ConchShell model writes out/demo/gallery/index.html and
# out/demo/summary.json (a few minutes); `conchshell demo --train` trains one from scratch.
demo: data
	$(BIN)/conchshell demo --data $(DATA) --out out/demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

clean:
	rm -rf $(DATA) site .pytest_cache
