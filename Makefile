# Development entry points. `make demo` and `make test` set everything up on a fresh machine.
# torch: pip installs $(TORCH) from wherever pip's configuration looks. On Linux x86-64 PyPI's
# torch is the CUDA build (several GB); PyTorch's CPU index gives the CPU build:
#   make TORCH_INDEX=https://download.pytorch.org/whl/cpu demo
# (empty by default: a machine whose pip config already finds a CPU wheel, as dev/CI, needs none).
# Bring your own torch elsewhere: `make TORCH= test` keeps whatever torch the venv has.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.streambench-installed

.PHONY: setup demo test lint format matrix clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(TORCH),$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)") "$(TORCH)")
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/streambench run --in-out 32-32,256-64 --batch-size 1,4

# two phases: everything in parallel, then the tests that check a measured time against a known
# truth to the millisecond, one at a time (marker `timing`), so no other test shares the CPUs
test: $(STAMP)
	$(BIN)/python -m pytest -n auto -m "not timing"
	$(BIN)/python -m pytest -m timing

matrix: $(STAMP)
	$(BIN)/nox -s matrix

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .nox .pytest_cache .ruff_cache build *.egg-info
