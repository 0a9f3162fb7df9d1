# Two commands on a fresh machine: `make demo` and `make test`.
# Both create (once, then reuse) a Python 3.10 virtual environment with the full stack
# (including the [cluster] extra, Ray, for the sweep tests).
# neurobench is installed without its dependencies (its torchaudio pin does not match our torch;
# the metric modules used by the cross-check test do not need it).
# lava-dl (its netx reader: the tests run our netx files in it) is installed without its
# dependencies too (it pins torch<2.4); its reader needs only opencv, torchvision and matplotlib,
# pinned below, with torch held at the version already installed (a mismatch fails loudly).
# Together they add ~150 MB and ~20 s. norse==1.1.0 (its NIR reader runs our NIR files in
# tests/test_nir_norse.py) is installed last: its dependencies (torch, torchvision, nir, nirtorch)
# are then already there, so it changes no version. It is not in an extra: on other Pythons its
# torchvision requirement could move torch.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: demo test venv bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py
	@py310="$$(bash scripts/find_python310.sh)" || exit 1; \
	echo "Creating $(VENV) with $$py310 (full stack: torch, snntorch, lava-nc, tonic, nir; ~6 GB, ~2 min)"; \
	"$$py310" -m venv $(VENV) && \
	$(PY) -m pip install -q --upgrade pip && \
	$(PY) -m pip install -q -e '.[lava,data,plot,dev,cluster]' && \
	$(PY) -m pip install -q --no-deps neurobench==2.3.0 lava-dl==0.6.0 && \
	torch_v="$$($(PY) -c 'import torch; print(torch.__version__.split("+")[0])')" && \
	$(PY) -m pip install -q "torch==$$torch_v" torchvision==0.29.1 opencv-python-headless==4.11.0.86 \
		matplotlib==3.10.9 && \
	$(PY) -m pip install -q "torch==$$torch_v" norse==1.1.0
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/snntorch-async demo --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
