# `make demo` and `make test` each work from a fresh clone: they create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install clean carry

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@# Real Fashion-MNIST for the demo, from Debian, when we may install it (optional).
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) || \
	  echo "note: dataset-fashion-mnist not installed; the demo will fall back to sklearn digits"; fi
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tribyol demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/lint-imports --no-cache

# Pure-Python wheels a bare GPU machine lacks (its python3 has torch and Lightning only), for
# `carry: [".carry"]`; benchmarks/carried.sh puts them on PYTHONPATH there (docs/reproduce.md).
carry: $(STAMP)
	rm -rf .carry/wheels && mkdir -p .carry/wheels
	$(BIN)/pip download -q --no-deps -d .carry/wheels \
	  "omegaconf==$$($(BIN)/python -c 'import omegaconf; print(omegaconf.__version__)')"

clean:
	rm -rf $(VENV) runs .pytest_cache
