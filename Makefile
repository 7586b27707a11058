# The two commands of the README: `make demo` (the main job) and `make test` (the test suite).
# Both install what they need first. PYTHON may point at any interpreter (a venv's, say).
PYTHON ?= python3
ORACLE_DIR ?= .cache/oracle

.PHONY: install oracle test demo bench

install:
	$(PYTHON) -m pip install -q -e ".[dev]"

# The reference implementation, used only by the parity tests. It is also called `gfpgan`, so it
# lives in a folder of its own and is imported only in subprocesses (see tests/oracle.py).
oracle:
	@test -f $(ORACLE_DIR)/gfpgan/__init__.py || \
	  $(PYTHON) -m pip install -q --no-deps --target $(ORACLE_DIR) gfpgan==1.3.8

test: install oracle
	$(PYTHON) -m pytest -q

demo: install
	$(PYTHON) -m gfpgan.demo

bench: install oracle
	$(PYTHON) -m gfpgan.tools.bench_generator
