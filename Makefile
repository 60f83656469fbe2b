# Everything a fresh machine needs, then the thing you asked for. Each target is idempotent.
#   make lab            set up what a student needs, then JupyterLab opening notebooks/00_start_here.ipynb
#                       (ARGS="--port 8890" passes arguments through)
#   make test           set up with the [test] extra (instructor tools, export, pytest) and, where it can, the
#                       Debian packages bubblewrap, chromium, chromium-driver; then every test: unit tests and
#                       every notebook through nbval (quick profile); the last lines say what was skipped and why
#   make unit           the fast tier only (under a minute); make slow: the rest (notebooks, sandbox, browser, set-up)
# Every tool is the `course` command (course --help); the targets below only add the set-up before it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
COURSE := $(VENV)/bin/course
STAMP := $(VENV)/.course-installed
DEV_STAMP := $(VENV)/.course-installed-test
ARGS ?=
PROFILE ?= quick
PYTEST_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

.PHONY: lab test setup setup-test venv venv-test weights data test-tools unit slow notebooks diary clean-notebooks refresh-notebooks slide-metadata bench handouts slides sweep release-exercises grade clean

lab: setup
	@echo "Set-up done. Open notebooks/00_start_here.ipynb (JupyterLab opens it now; Ctrl-C stops it)."
	$(COURSE) lab $(ARGS)

test: unit slow

# The fast tier: every test no tier marker tags (markers in pyproject.toml; nbval's cells are `notebooks`).
# It runs on every core (pytest-xdist: WORKERS processes, one torch thread each, a test module per worker at a time).
# Measured 2026-12-06 on this 2-core machine: 361 tests in 31 s wall clock when idle (a clean-clone .ci/run); 52 s
# of CPU (user+sys) and 72 s wall clock while a background sweep held one of the two cores (one worker alone took
# 59 s of CPU). Keep it under a minute: a test that needs more than a second or two gets a tier marker.
WORKERS ?= auto
FAST_TIER := not slow and not notebooks and not sandbox and not browser and not setup

unit: setup-test
	OMP_NUM_THREADS=1 $(PY) -m pytest tests -m "$(FAST_TIER)" -n $(WORKERS) --dist loadscope $(PYTEST_ARGS)

# Everything `make unit` leaves out (notebooks, sandbox, browser, set-up, slow): `make unit` then `make slow` runs
# each test once, as `make test` does (CI runs them in that order). The slow tiers run on every core (pytest-xdist:
# WORKERS processes, one thread each, a notebook or a test module per worker at a time); the tests marked `serial`
# need the machine and the checkout to themselves, so they run after, one at a time.
slow: setup-test
	COURSE_PROFILE=$(PROFILE) OMP_NUM_THREADS=1 $(PY) -m pytest -m "not ($(FAST_TIER)) and not serial" -n $(WORKERS) --dist loadscope $(PYTEST_ARGS) || [ $$? = 5 ]
	COURSE_PROFILE=$(PROFILE) $(PY) -m pytest -m "not ($(FAST_TIER)) and serial" $(PYTEST_ARGS) || [ $$? = 5 ]

notebooks: setup-test
	COURSE_PROFILE=$(PROFILE) $(PY) -m pytest notebooks $(PYTEST_ARGS)

setup: venv weights data

setup-test: venv-test weights data test-tools

venv: $(STAMP)

venv-test: $(DEV_STAMP)

DISK_NOTE := about 6 GB on Linux (PyTorch's CUDA build), 1-2 GB on macOS and Windows; then 14 MB of weights and 55 MB of Fashion-MNIST

# What a student needs (no test tools); reinstalls only when pyproject.toml changes. pip shows its own progress.
$(STAMP): pyproject.toml
	@echo "Installing the course into $(VENV): $(DISK_NOTE). PyTorch is the big download (minutes)."
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --progress-bar on -e .
	@touch $@

# The [test] extra on top: instructor tools, ONNX export, pytest, Playwright, ruff.
$(DEV_STAMP): pyproject.toml
	@echo "Installing the course with its [test] extra into $(VENV): $(DISK_NOTE), and about 0.5 GB of test tools."
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --progress-bar on -e ".[test]"
	@touch $@ $(STAMP)

weights: venv
	@$(COURSE) fetch weights --backbone mobilenet_v2

# Fashion-MNIST: present and checked -> download -> Debian's dataset-fashion-mnist (installed here if needed).
# Where apt-get exists, the first try says "not found yet, trying Debian's package next" instead of FAILED;
# FAILED (with what to do) comes only from the last try, when no source worked.
FETCH_DATA_ARGS ?=
data: venv
	@if command -v apt-get >/dev/null 2>&1; then next=--debian-package-next; else next=; fi; \
	$(COURSE) fetch data $(FETCH_DATA_ARGS) $$next; rc=$$?; \
	if [ $$rc -eq 3 ] && [ -n "$$next" ]; then \
	  echo "Installing Debian's dataset-fashion-mnist (offline source of Fashion-MNIST, about 30 MB)"; \
	  $(SUDO) apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	    { $(SUDO) apt-get update -q >/dev/null 2>&1 && $(SUDO) apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } || \
	    echo "Could not install dataset-fashion-mnist (needs root or passwordless sudo, and Debian's archive)"; \
	  $(COURSE) fetch data --source debian $(FETCH_DATA_ARGS); \
	else exit $$rc; fi

# The test suite's system tools: bubblewrap (the grader's sandbox tests) and Chromium (the real-browser tests),
# installed like dataset-fashion-mnist where this can (Debian/Ubuntu, root or passwordless sudo). Never fails:
# without them those tests are skipped, and pytest's last lines say which and how to enable them.
TEST_PACKAGES ?= bubblewrap chromium chromium-driver
test-tools:
	@[ -f .tools/node_modules/axe-core/axe.min.js ] || ! command -v npm >/dev/null 2>&1 || npm install --prefix .tools --no-save --no-audit --no-fund --silent axe-core@4 || echo "Could not install axe-core (npm): the accessibility tests are skipped (\`make test-tools\` with npm enables them)"
	@need=; for pkg in $(TEST_PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || need="$$need $$pkg"; done; \
	if [ -z "$$need" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then \
	  echo "Not installing$$need (no apt-get here): install bubblewrap and Chromium your system's way, or the sandbox and browser tests are skipped"; exit 0; fi; \
	if [ -n "$(SUDO)" ] && ! $(SUDO) true >/dev/null 2>&1; then \
	  echo "Not installing$$need (needs root or passwordless sudo): run \`sudo apt-get install -y$$need\` to run the sandbox and browser tests too"; exit 0; fi; \
	echo "Installing$$need for the sandbox and browser tests (Chromium is about 300 MB)"; \
	for pkg in $$need; do \
	  $(SUDO) apt-get install -y -q --no-install-recommends $$pkg >/dev/null 2>&1 || \
	    { $(SUDO) apt-get update -q >/dev/null 2>&1 && $(SUDO) apt-get install -y -q --no-install-recommends $$pkg >/dev/null 2>&1; } || \
	    echo "Could not install $$pkg: the tests that need it are skipped (\`sudo apt-get install $$pkg\` enables them)"; \
	done; exit 0

diary: venv
	$(COURSE) diary DIARY.template.md -o DIARY.md
	@echo "wrote DIARY.md"

# Outputs only in '# NBVAL_CHECK_OUTPUT' cells, no execution counts.
clean-notebooks: venv-test
	$(COURSE) notebooks clean notebooks

# Execute every notebook (quick profile) and keep the outputs of checked cells only.
refresh-notebooks: setup-test
	COURSE_PROFILE=$(PROFILE) $(COURSE) notebooks refresh notebooks

# Slide metadata of every lesson, derived from its headings (run after editing a lesson).
slide-metadata: venv-test
	$(COURSE) notebooks slides notebooks

# Lesson and instructor tools (see README): each runs after the set-up.
bench: setup-test
	$(COURSE) bench $(ARGS)

sweep: setup-test
	COURSE_PROFILE=$(PROFILE) $(COURSE) sweep $(ARGS)

handouts: setup-test
	$(COURSE) handouts --profile $(PROFILE) $(ARGS)

slides: setup-test
	$(COURSE) slides --profile $(PROFILE) $(ARGS)

release-exercises: venv-test
	$(COURSE) release

grade: venv-test
	$(COURSE) grade $(ARGS)

clean:
	rm -rf build .pytest_cache
