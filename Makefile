# Two commands: `make run` serves the demo, `make test` runs every test.
# `make bench` (or `make bench QUICK=1`) measures mailplat against Postfix and
# Dovecot: see bench/README.md.
# Each creates what it needs: the virtualenv, the project installed into it,
# and (for tests) the Debian tools the integration tests drive.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= var
SOURCES := $(shell find mailplat twisted -name '*.py') setup.cfg pyproject.toml
# postfix is installed for smtp-sink (the outbound tests' SMTP peer) only:
# unconfigured ("No configuration", preseeded) and never started.
# Debian packages the tests drive; PACKAGE=COMMAND where the command has
# another name (isync installs mbsync).
# opendkim-tools and opendkim (the tests only run `opendkim -t`, its offline
# test mode, as the DKIM interop peer: it signs and verifies test messages).
DEBIAN_TOOLS := swaks postfix isync=mbsync fetchmail opendkim-tools=opendkim-genkey opendkim

.PHONY: run test tools bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# A regular (not editable) install: Twisted finds the plugin in the installed
# twisted/plugins/, as it will for users.
# build/ is removed first: setuptools reuses it, and a module deleted from
# the source tree would otherwise stay in the installed package.
# The pam extra too: its tests log in through PAM.
$(VENV)/.installed: $(BIN)/python $(SOURCES)
	rm -rf build
	$(BIN)/pip install -q '.[test,pam]'
	@touch $@

run: $(VENV)/.installed
	$(BIN)/mailplat demo --dir $(DEMO_DIR)
	$(BIN)/twistd --nodaemon --pidfile= mailplat --config $(DEMO_DIR)/mailplat.toml

tools:
	@missing=""; for t in $(DEBIAN_TOOLS); do c=$${t#*=}; p=$${t%%=*}; command -v $$c >/dev/null || test -x /usr/sbin/$$c || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  echo "postfix postfix/main_mailer_type select No configuration" | $$SUDO debconf-set-selections && \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  if $$SUDO /usr/sbin/postfix status >/dev/null 2>&1; then $$SUDO /usr/sbin/postfix stop; fi; \
	fi

test: $(VENV)/.installed tools
	$(BIN)/python -m pytest -q

# Full benchmark run (< 20 minutes), or QUICK=1 for a check (< 2 minutes).
bench: $(VENV)/.installed
	$(BIN)/python bench/harness.py $(if $(QUICK),--quick)
	$(BIN)/python bench/trust.py $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) build *.egg-info
