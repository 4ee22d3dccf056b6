# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out

.PHONY: demo test test-fast install lint clean browser

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: 2.13.0 is the CPU wheel on our disks; an unpinned torch pulls a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/neurodit demo --out $(DEMO_OUT)

# Two pytest workers (pytest-xdist), one torch/BLAS thread each: the suite is many small processes and
# imports, so two workers on two cores take 0.58x the time of one worker with two threads (measured,
# README "Tests"); OMP_NUM_THREADS reaches the CLI subprocesses the tests start too.
PYTEST_PAR := OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n 2

test: $(STAMP) browser
	$(PYTEST_PAR)

# The edit-test loop: everything but the tests marked @pytest.mark.slow (demo, quality, 2 mm, browser).
test-fast: $(STAMP)
	$(PYTEST_PAR) -m "not slow"

# Headless chromium for the report's browser test (tests/report/test_browser.py). Never fails the
# build: without root or network the install is skipped and that test skips with a clear message.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  echo "browser: $$(command -v chromium || command -v chromium-browser) found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "browser: installing Debian chromium for the report test (apt-get)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium >/dev/null) || echo "browser: could not install chromium; the browser test will skip"; \
	else \
	  echo "browser: chromium not found and cannot install it (needs root + apt-get); the browser test will skip"; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) $(DEMO_OUT)
