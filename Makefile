# Everything a fresh machine needs, then the thing you asked for. Each target is idempotent.
#   make lab            set up, then JupyterLab on notebooks/ (ARGS="--port 8890" passes arguments through)
#   make test           set up, then every test: unit tests and every notebook through nbval (quick profile)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.course-installed
ARGS ?=
PROFILE ?= quick
PYTEST_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

.PHONY: lab test setup venv weights data unit notebooks diary clean-notebooks refresh-notebooks bench handouts sweep release-exercises grade clean

lab: setup
	@echo "Starting JupyterLab on notebooks/ (open the URL it prints; Ctrl-C stops it)"
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(ARGS)

test: setup
	COURSE_PROFILE=$(PROFILE) $(PY) -m pytest $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest tests $(PYTEST_ARGS)

notebooks: setup
	COURSE_PROFILE=$(PROFILE) $(PY) -m pytest notebooks $(PYTEST_ARGS)

setup: venv weights data

venv: $(STAMP)

# Reinstalls only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[test]"
	@touch $@

weights: venv
	@$(PY) data_scripts/fetch_weights.py --backbone mobilenet_v2

# Fashion-MNIST: present and checked -> download -> Debian's dataset-fashion-mnist (installed here if needed).
data: venv
	@$(PY) data_scripts/fetch_data.py fashion-mnist; rc=$$?; \
	if [ $$rc -eq 3 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Debian's dataset-fashion-mnist (offline source of Fashion-MNIST)"; \
	  $(SUDO) apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	    { $(SUDO) apt-get update -q >/dev/null 2>&1 && $(SUDO) apt-get install -y -q dataset-fashion-mnist >/dev/null; } && \
	  $(PY) data_scripts/fetch_data.py fashion-mnist; \
	else exit $$rc; fi

diary: venv
	$(PY) -m course_utils.diary DIARY.template.md -o DIARY.md
	@echo "wrote DIARY.md"

# Outputs only in '# NBVAL_CHECK_OUTPUT' cells, no execution counts.
clean-notebooks: venv
	$(PY) -m course_utils.notebook_tools clean notebooks

# Execute every notebook (quick profile) and keep the outputs of checked cells only.
refresh-notebooks: setup
	COURSE_PROFILE=$(PROFILE) $(PY) -m course_utils.notebook_tools refresh notebooks

# Lesson tools (see README): each runs after the set-up.
bench: setup
	$(PY) -m course_utils.bench $(ARGS)

sweep: setup
	COURSE_PROFILE=$(PROFILE) $(PY) -m course_utils.sweep $(ARGS)

handouts: setup
	COURSE_PROFILE=$(PROFILE) $(PY) -m course_utils.handouts --profile $(PROFILE) $(ARGS)

release-exercises: venv
	$(PY) -m course_utils.exercises release

grade: venv
	$(PY) -m course_utils.grade $(ARGS)

clean:
	rm -rf build .pytest_cache
