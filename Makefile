# Everything a fresh machine needs, then the thing you asked for. Each target is idempotent.
#   make lab            set up, then JupyterLab on notebooks/ (ARGS="--port 8890" passes arguments through)
#   make test           set up, then every test: unit tests and every notebook through nbval (quick profile)
# Every tool is the `course` command (course --help); the targets below only add the set-up before it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
COURSE := $(VENV)/bin/course
STAMP := $(VENV)/.course-installed
ARGS ?=
PROFILE ?= quick
PYTEST_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

.PHONY: lab test setup venv weights data unit notebooks diary clean-notebooks refresh-notebooks slide-metadata bench handouts slides sweep release-exercises grade clean

lab: setup
	$(COURSE) lab $(ARGS)

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
	@$(COURSE) fetch weights --backbone mobilenet_v2

# Fashion-MNIST: present and checked -> download -> Debian's dataset-fashion-mnist (installed here if needed).
data: venv
	@$(COURSE) fetch data; rc=$$?; \
	if [ $$rc -eq 3 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Debian's dataset-fashion-mnist (offline source of Fashion-MNIST)"; \
	  $(SUDO) apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	    { $(SUDO) apt-get update -q >/dev/null 2>&1 && $(SUDO) apt-get install -y -q dataset-fashion-mnist >/dev/null; } && \
	  $(COURSE) fetch data; \
	else exit $$rc; fi

diary: venv
	$(COURSE) diary DIARY.template.md -o DIARY.md
	@echo "wrote DIARY.md"

# Outputs only in '# NBVAL_CHECK_OUTPUT' cells, no execution counts.
clean-notebooks: venv
	$(COURSE) notebooks clean notebooks

# Execute every notebook (quick profile) and keep the outputs of checked cells only.
refresh-notebooks: setup
	COURSE_PROFILE=$(PROFILE) $(COURSE) notebooks refresh notebooks

# Slide metadata of every lesson, derived from its headings (run after editing a lesson).
slide-metadata: venv
	$(COURSE) notebooks slides notebooks

# Lesson and instructor tools (see README): each runs after the set-up.
bench: setup
	$(COURSE) bench $(ARGS)

sweep: setup
	COURSE_PROFILE=$(PROFILE) $(COURSE) sweep $(ARGS)

handouts: setup
	$(COURSE) handouts --profile $(PROFILE) $(ARGS)

slides: setup
	$(COURSE) slides --profile $(PROFILE) $(ARGS)

release-exercises: venv
	$(COURSE) release

grade: venv
	$(COURSE) grade $(ARGS)

clean:
	rm -rf build .pytest_cache
