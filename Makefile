# wam_runtime: the two commands for a fresh machine are `make demo` and `make test`.
# Every target installs what it needs (`make setup` is idempotent and fast when done): the
# pinned requirements, then this package in editable mode, so that `.venv/bin/wam-runtime`
# and the node console scripts run the source tree.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
WAM := $(VENV)/bin/wam-runtime
INSTALL_INPUTS := requirements.txt requirements-dev.txt setup.py package.xml
REQ_HASH := $(shell cat $(INSTALL_INPUTS) | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(REQ_HASH)

# DDS stays on this machine: loopback discovery, a random domain per make invocation, and
# the shared-memory-only Fast DDS profile shipped in config/.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= $(shell shuf -i 1-100 -n 1)
export RMW_IMPLEMENTATION := rmw_fastrtps_cpp
export FASTDDS_DEFAULT_PROFILES_FILE := $(CURDIR)/config/fastdds_shm.xml
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: setup demo demo-slice test lint bench clean

setup: $(STAMP)

$(STAMP): $(INSTALL_INPUTS)
	./scripts/setup_system.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

demo: setup
	$(WAM) demo $(DEMO_ARGS)

demo-slice: setup
	$(WAM) demo-slice $(DEMO_ARGS)

test: setup
	$(PY) -m pytest -ra $(PYTEST_ARGS)

lint: setup
	$(PY) -m pytest -ra -m linter

bench: setup
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf build install log .pytest_cache *.egg-info bench/results/*.json bench/results/*.md
