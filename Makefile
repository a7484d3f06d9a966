# wam_runtime: the two commands for a fresh machine are `make demo` and `make test`.
# Every target installs what it needs (`make setup` is idempotent and fast when done).

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)
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

$(STAMP): requirements.txt requirements-dev.txt
	./scripts/setup_system.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

demo: setup
	$(PY) -m wam_runtime.demo.reach_demo $(DEMO_ARGS)

demo-slice: setup
	$(PY) -m wam_runtime.demo.slice_demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest -ra $(PYTEST_ARGS)

lint: setup
	$(PY) -m pytest -ra -m linter

bench: setup
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf build install log .pytest_cache bench/results/*.json bench/results/*.md
