# Two commands do all the set-up on a fresh machine (Python 3.11): `make flow` and `make test`.
# Each creates the virtual environment it needs in .venv on first use.

PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of torch; users with a GPU can pass e.g. TORCH_SPEC="torch" (the package itself
# only asks for a range).
TORCH_SPEC ?= torch==2.13.0
RUN_DIR ?= runs/digits
BIN := $(VENV)/bin

.PHONY: flow test test-all bench venv sysdeps clean gpu-bundle

venv: $(VENV)/.installed sysdeps

# Optional system headers: lz4 lets Verilator write FST waveforms of failing RTL runs (VCD
# otherwise). Installed with apt where that works (root on Debian); skipped with a note elsewhere.
sysdeps:
	@if [ ! -f /usr/include/lz4.h ]; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			(apt-get install -y -q liblz4-dev >/dev/null 2>&1 || \
			 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q liblz4-dev >/dev/null 2>&1)) || \
			echo "note: liblz4-dev not installed; failing RTL runs write VCD instead of FST"; \
		else echo "note: no lz4 headers; failing RTL runs write VCD instead of FST"; fi; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# The main job, on the built-in digits data: `saformer flow` trains, runs QAT, exports the
# integers, checks the golden model, runs the hls4ml C simulation and the RTL co-simulation,
# synthesizes the SASA core and writes RUN_DIR/report.md. Finished stages are kept on a rerun.
flow: venv
	$(BIN)/saformer flow --out $(RUN_DIR)

# The default suite (what CI runs); slow cases are opted into with test-all.
test: venv
	$(BIN)/python -m pytest

test-all: venv
	$(BIN)/python -m pytest --runslow

bench: venv
	$(BIN)/python benchmarks/throughput.py

# What tools/gpu_cifar.sh needs on a lent GPU machine (docs/gpu.md), in two ignored folders that a
# device call carries: .whl, the wheels its image lacks (brevitas and two pure-Python needs of it,
# for its Python 3.12), and .c10, the CIFAR-10 archives.
CIFAR_ARCHIVES ?= ../shared/datasets/cifar10-jpeg
GPU_WHEELS := brevitas==0.13.4 dependencies==2.0.1 unfoldNd==0.2.3
gpu-bundle: venv
	@test -f $(CIFAR_ARCHIVES)/cifar10-jpeg-train.tar.gz || \
		{ echo "gpu-bundle: no cifar10-jpeg-train.tar.gz in CIFAR_ARCHIVES=$(CIFAR_ARCHIVES)"; exit 2; }
	mkdir -p .whl .c10
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp -d .whl $(GPU_WHEELS)
	cp $(CIFAR_ARCHIVES)/cifar10-jpeg-*.tar.gz .c10/
	du -sh .whl .c10

clean:
	rm -rf $(VENV) runs build *.egg-info
