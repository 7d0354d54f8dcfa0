# Set up a fresh Debian 12 machine (root) and run hetmig's main job or tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)
	bash scripts/provision.sh
	# bytecode once: this environment sets PYTHONDONTWRITEBYTECODE, and every CLI, hook and
	# agent start would compile its modules again (tens of ms, some inside a migration)
	$(PY) -m compileall -q capture runtime_shim oci_hook mappings proto >/dev/null

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/hetmig demo

test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: setup
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info
