# The two commands a fresh machine needs: `make demo` and `make test`. Both set up what they need.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
STAMP   := $(VENV)/.setup-stamp
# Debian packages the tests and the CLI use (ffprobe in the media tests, chromium for the preview page).
APT_PKGS := ffmpeg chromium

.PHONY: setup test bench lint demo clean gpu-check gpu-check-dry

setup: $(STAMP)

# Re-runs only when the declared dependencies change, so a second `make setup` takes seconds.
$(STAMP): pyproject.toml constraints.txt Makefile
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	$(PY) -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)"
	touch $@

test: setup
	$(VENV)/bin/pytest -q -ra

bench: setup
	$(VENV)/bin/instag bench kernels --json benchmarks/kernels_cpu.json

lint: setup
	$(VENV)/bin/ruff check instag tests cuda_ext

demo: setup
	$(VENV)/bin/instag demo --out out/demo

# On a GPU machine, in one command: build, CUDA tests, benches, adapt_5s + eval + a dub, the quick recipe scored
# beside adapt_5s (scripts/gpu_check.py).
# No `setup` prerequisite: that needs PyPI, and a GPU machine may have none (the script finds an interpreter).
gpu-check:
	scripts/gpu-check

# The same stages at tiny sizes on the CPU (about a minute; CI runs a part of it in tests/test_gpu_check.py).
gpu-check-dry: setup
	scripts/gpu-check --dry --out out/gpu-check-dry

clean:
	rm -rf $(VENV) build *.egg-info
