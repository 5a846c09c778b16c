# Every target bootstraps .venv by itself: torch 2.13.0 (CPU wheel) first, then the package.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export TRL_EXPERIMENTAL_SILENCE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-slow bench install clean
install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q torch==2.13.0 -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rlft-gym demo

# Two workers, one test file each at a time (they share the cached tiny world, built once under its lock); the
# performance ratios run afterwards on their own, so no other test competes with them for the cores.
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -n 2 --dist loadfile --ignore=tests/benchmarks
	$(PY) -m pytest -q tests/benchmarks

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow -s

bench: $(STAMP)
	$(PY) -m pytest -q -s tests/benchmarks -m "perf or not perf"

clean:
	rm -rf $(VENV) build *.egg-info
