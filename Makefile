# The two commands of the README: `make demo` and `make test`. Both set up .venv by themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Which OpenCV goes into .venv: `gui` (opencv-contrib-python: windows, for
# `rig calibrate --show-pattern`) where a display exists, else `headless`. Never both: they
# provide the same cv2 module. Override: `make setup OPENCV=gui`.
OPENCV ?= $(if $(DISPLAY)$(WAYLAND_DISPLAY),gui,headless)
STAMP := $(VENV)/.installed-$(OPENCV)

.PHONY: setup apt venv test lint firmware-test demo bench clean

setup: apt venv

# System packages (AVR toolchain, QEMU, Aravis...) listed in tools/apt-packages.txt; installed
# when missing and root, otherwise the tests that need them skip with a reason.
apt:
	@bash tools/install-apt.sh

venv: $(STAMP)

# torch is pinned first: its CPU wheel is the one the project is tested with (pyproject gives a
# range, so the package also installs beside a user's own torch). The other OpenCV variant is
# removed before this one goes in (tools/opencv-variant.sh).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@rm -f $(VENV)/.installed-*
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	@bash tools/opencv-variant.sh $(PY) $(OPENCV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,$(OPENCV)]'
	@# Aravis's Python bindings build against the system's GObject introspection (tools/apt-packages.txt)
	@if pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null; then \
	  $(PY) -m pip install -q --disable-pip-version-check 'PyGObject<3.51'; \
	else echo "note: GObject introspection headers missing: the Aravis backend tests will skip"; fi
	@touch $@

# ruff (style) and mypy (types: the packages listed in pyproject's [tool.mypy])
lint: venv
	$(PY) -m ruff check .
	$(PY) -m mypy

firmware-test: apt
	@if [ -f firmware/Makefile ]; then $(MAKE) -C firmware test; fi

test: setup lint firmware-test
	$(PY) -m pytest -q

demo: setup
	@bash tools/demo.sh

bench: venv
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b --quick || exit 1; done

clean:
	rm -rf demo_out .pytest_cache
	@if [ -f firmware/Makefile ]; then $(MAKE) -C firmware clean; fi
