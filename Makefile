# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing and install the project into it.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.reclnet-installed
EXTRAS ?= train,ort,openvino,video,dev,cluster

.PHONY: install demo test lint format check-c c-defaults bench clean

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -e ".[$(EXTRAS)]"
	touch $(STAMP)

# (Re)build the Cython extension in place; a no-op when nothing changed.
install: $(STAMP)
	$(PY) setup.py -q build_ext --inplace

demo: install
	$(VENV)/bin/reclnet demo

test: install check-c lint
	$(VENV)/bin/pytest

# The C core's post-processing defaults are generated from reclnet/config.py.
c-defaults: $(STAMP)
	$(PY) -c 'from reclnet.config import write_postprocess_defaults_c_header as w; print(w())'

check-c:
	$(MAKE) -C csrc check

lint:
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The suite's peers (OpenVINO) live in the `bench` extra, installed only for this target.
# `make bench BENCH_ARGS=--quick` for the one-minute run.
BENCH_STAMP := $(VENV)/.reclnet-bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -e ".[$(EXTRAS),bench]"
	touch $(BENCH_STAMP)

bench: install $(BENCH_STAMP)
	$(VENV)/bin/reclnet bench $(BENCH_ARGS)

clean:
	rm -rf build runtime/postproc/_core.c runtime/postproc/_core*.so
	$(MAKE) -C csrc clean
