# Two commands do all the set-up on a fresh machine (Python 3.11): `make flow` and `make test`.
# Each creates the virtual environment it needs in .venv on first use.

PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of torch; users with a GPU can pass e.g. TORCH_SPEC="torch" (the package itself
# only asks for a range).
TORCH_SPEC ?= torch==2.13.0
RUN_DIR ?= runs/digits
BIN := $(VENV)/bin

.PHONY: flow test test-all bench venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# The main job. Until the later stages land, the flow is: train on digits, evaluate the run.
flow: venv
	@if [ -f $(RUN_DIR)/metrics.json ]; then echo "$(RUN_DIR) is trained already (rm -r it to retrain)"; \
	else $(BIN)/saformer train --dataset digits --out $(RUN_DIR); fi
	$(BIN)/saformer eval $(RUN_DIR)

# The default suite (what CI runs); slow cases are opted into with test-all.
test: venv
	$(BIN)/python -m pytest

test-all: venv
	$(BIN)/python -m pytest --runslow

bench: venv
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs build *.egg-info
