# The two commands a fresh machine needs: `make demo` and `make test`. Both set up what they need.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
STAMP   := $(VENV)/.setup-stamp
# Debian packages the tests and the CLI use (ffprobe in the media tests, chromium for the preview page).
APT_PKGS := ffmpeg chromium

.PHONY: setup test bench lint demo clean

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

clean:
	rm -rf $(VENV) build *.egg-info
