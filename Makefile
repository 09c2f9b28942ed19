# Two commands: `make run` serves the demo, `make test` runs every test.
# Each creates what it needs: the virtualenv, the project installed into it,
# and (for tests) the Debian tools the integration tests drive.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= var
SOURCES := $(shell find mailplat twisted -name '*.py') setup.cfg pyproject.toml
DEBIAN_TOOLS := swaks

.PHONY: run test tools bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# A regular (not editable) install: Twisted finds the plugin in the installed
# twisted/plugins/, as it will for users.
$(VENV)/.installed: $(BIN)/python $(SOURCES)
	$(BIN)/pip install -q '.[test]'
	@touch $@

run: $(VENV)/.installed
	$(BIN)/mailplat demo --dir $(DEMO_DIR)
	$(BIN)/twistd --nodaemon --pidfile= mailplat --config $(DEMO_DIR)/mailplat.toml

tools:
	@missing=""; for t in $(DEBIAN_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

test: $(VENV)/.installed tools
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
