# Two commands: `make demo` (train, serve and query a model on the built-in corpus) and
# `make test` (the test suite). Both create .venv and install the project first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Offline: the built-in corpus and local files need no Hugging Face Hub.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
DEMO_ARGS ?=

.PHONY: install demo test chromium deploy-tools lint format clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes. torch is pinned and installed first: an
# unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(OFFLINE) $(BIN)/python scripts/demo.py $(DEMO_ARGS)

test: $(STAMP) chromium deploy-tools
	$(OFFLINE) $(BIN)/pytest -q

# Headless Chromium for tests/test_web.py, installed when missing where that is possible (root with
# apt-get, as in CI). Elsewhere those tests skip and print why; .ci/run makes a skip fail.
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
		|| echo "make: could not install chromium: the browser tests will skip"; \
	else echo "make: chromium is missing and installing it needs root and apt-get: the browser tests will skip"; fi

# redis-server (tests/test_store.py and the keys/limits tests), nginx (tests/test_deploy.py) and podman
# with what it needs here (tests/test_container.py), installed when missing as chromium is.
DEPLOY_PACKAGES := redis-server nginx podman buildah runc mmdebstrap fuse-overlayfs slirp4netns uidmap \
	containernetworking-plugins catatonit iptables
deploy-tools:
	@command -v redis-server >/dev/null && command -v nginx >/dev/null && command -v podman >/dev/null \
		&& command -v runc >/dev/null && command -v mmdebstrap >/dev/null || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
			--no-install-recommends $(DEPLOY_PACKAGES) \
		|| echo "make: could not install $(DEPLOY_PACKAGES): the Redis, nginx and container tests will skip"; \
	else echo "make: redis-server, nginx or podman is missing and installing them needs root and apt-get: those tests will skip"; fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) runs/demo
