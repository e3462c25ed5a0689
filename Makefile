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

# What a bare GPU machine lacks, for `carry: [".carry"]` (docs/reproduce.md "Packing"): the
# pure-Python wheels its python3 has not (it has torch, Lightning and the rest of tribyol's
# dependencies; omegaconf 2.4 vendors its antlr4), which benchmarks/carried.sh puts on PYTHONPATH
# there, and the CIFAR-10 train archive for benchmarks/gpu.sh's claim (16 MB; the tree that
# travels must stay under 64 MiB).
carry: $(STAMP)
	rm -rf .carry/wheels && mkdir -p .carry/wheels .carry/data
	$(BIN)/pip download -q --no-deps -d .carry/wheels \
	  "omegaconf==$$($(BIN)/python -c 'import omegaconf; print(omegaconf.__version__)')"
	@if [ -e ../shared/data/cifar10-train.tar.gz ]; then \
	  cp -u ../shared/data/cifar10-train.tar.gz .carry/data/; \
	else echo "note: ../shared/data/cifar10-train.tar.gz not found: gpu.sh will skip the claim"; fi

clean:
	rm -rf $(VENV) runs .pytest_cache
