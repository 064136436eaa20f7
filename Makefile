# The two commands of the README. Both create the virtual environment on first use.
#   make demo   the main job (fercomp pipeline) on the built-in synthetic data
#   make test   the test suite
# VENV can point elsewhere (CI keeps one cached outside the clone, keyed by the lock file).

PYTHON ?= python3
VENV ?= .venv
LOCK := requirements.lock
STAMP := $(VENV)/.fercomp-deps

.PHONY: demo test install

# --no-deps: the lock is a full freeze, and grad-cam's metadata asks for opencv-python,
# which would clash with the headless OpenCV pinned here.
$(STAMP): $(LOCK)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --no-deps -r $(LOCK)
	touch $(STAMP)

install: $(STAMP)
	$(VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e .

demo: install
	$(VENV)/bin/fercomp pipeline
	$(VENV)/bin/fercomp predict examples/astronaut.jpg --out artifacts/demo-predict

# pytest exits 5 when it collected no test: say so instead of failing obscurely.
# The quick suite (under 10 minutes on 2 cores) leaves out the tests marked slow; CI runs them
# all (.ci/run sets FERCOMP_ALL_TESTS=1).
test: install
	$(VENV)/bin/python -m pytest -q --durations=15 $(if $(FERCOMP_ALL_TESTS),,-m "not slow"); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc
