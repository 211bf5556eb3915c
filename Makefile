# The two set-up commands: `make demo` (offline demo build) and `make test` (the docs and the whole suite).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO   := dist

.PHONY: demo test lint bench clean browser

# uv installs what pip would (the same versions, checked), in less time.
# It reads no pip configuration, so the folder of local wheels pip is pointed at (PIP_FIND_LINKS: torch's
# CPU build on this machine) is passed on. --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is
# set, every process would otherwise compile TensorFlow's sources again.
UV     := $(PY) -m uv pip install -q --compile-bytecode --python $(PY) $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS))

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "uv>=0.13"
	# torch==2.13.0 is a CPU build on this disk; setuptools<82 keeps tensorflow_hub importable.
	# ml_dtypes<0.7 (TensorFlow allows 0.5.1 to 1.0): 0.7.0 imports several times slower than 0.6.0, and every
	# TensorFlow process pays it. hubpub works with either.
	$(UV) -e ".[all,torch,dev]" "setuptools<82" "ml_dtypes<0.7"
	# timm, the independent reference the porting tests compare with; --no-deps: its torchvision would
	# replace the CPU torch (the tests stand in for the few torchvision names timm imports).
	$(UV) --no-deps "timm>=1.0.20"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m hubpub demo --out $(DEMO)

# The site's browser test drives Debian's Chromium; installed here where missing (needs apt and root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1)) || \
	  echo "note: could not install Debian's chromium and chromium-driver: the browser test will be skipped (and fail under CI=true)"

test: $(STAMP) browser
	$(PY) -m ruff check hubpub tests benchmarks
	# The type check of hubpub/, as pyproject's [tool.mypy] sets it.
	$(PY) -m mypy
	# The documentation: --strict fails on a broken link or anchor and on a page left out of the nav.
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -q
	# Two workers, one per core; the longest tests start first (tests/conftest.py).
	$(PY) -m pytest -q -n 2 --dist worksteal

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(DEMO) site .pytest_cache .mypy_cache
