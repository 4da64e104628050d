# Two entry points: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages some features need (WordNet, Fashion-MNIST, exiftool, PostgreSQL, Chromium).
DEBS := wordnet-base wordnet-sense-index dataset-fashion-mnist libimage-exiftool-perl postgresql chromium

.PHONY: demo test lint system-deps setup bench clean realphotos

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: a plain `torch` requirement would pull a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[all]'
	touch $@

system-deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "note: not root or no apt-get; tests needing $$missing will be skipped"; \
	fi

# Third-party models converted once into the model cache (npm's @vladmandic/human for the object
# detector). Needs npm: Debian's `npm` is installed when missing and we are root.
setup: $(STAMP) system-deps
	@command -v npm >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian package: npm"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; fi; }
	@if command -v npm >/dev/null; then $(PY) scripts/fetch_detector.py; \
	else echo "note: no npm; the object detector is not set up and its tests will be skipped"; fi

demo: $(STAMP) system-deps setup
	$(PY) scripts/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench scripts

test: $(STAMP) system-deps setup lint
	$(VENV)/bin/pytest -q

# the real-photo benchmark (bench/realphotos/): installs its Debian packages when root, builds .cache/realphotos/
realphotos: $(STAMP)
	$(PY) scripts/build_realphotos.py

clean:
	rm -rf $(VENV) build *.egg-info
