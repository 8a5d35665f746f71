# Development and CI entry points for the crdb.tls collection.
#
#   make venv          .venv with requirements-dev.txt (built once; rebuilt
#                      when requirements-dev.txt changes)
#   make test          unit lint sanity integration peers molecule, in that
#                      order, stopping at the first failure, with a summary
#   make <one of them> just that stage
#   make build|install|demo|clean|distclean
#
# Host packages (podman, postgresql, ...) come from
# tests/scripts/prepare-host.sh; .ci/run does everything from a fresh clone.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
VENV_BIN := $(CURDIR)/$(VENV)/bin
VENV_STAMP := $(VENV)/.crdb-tls-requirements.stamp
# The venv's tools first on PATH: ansible-test, molecule and ansible-lint
# start other tools (ansible-playbook, python3.11) by name.
VENV_PATH := $(VENV_BIN):$(PATH)

BUILD := $(CURDIR)/build
# Modules that run on the nodes (install, certs_info, reload) must work with
# the cryptography of the nodes' OS, not only the controller's.
COMPAT_CRYPTOGRAPHY := 38.0.4
COMPAT_VENV := $(BUILD)/venv-cryptography-$(COMPAT_CRYPTOGRAPHY)
COMPAT_STAMP := $(COMPAT_VENV)/.stamp

VERSION := $(shell sed -n 's/^version:[[:space:]]*//p' galaxy.yml | tr -d '"'"'"' ')
TARBALL := $(BUILD)/crdb-tls-$(VERSION).tar.gz
COLLECTIONS := $(BUILD)/collections
INSTALLED := $(COLLECTIONS)/ansible_collections/crdb/tls
# build/src/ansible_collections/crdb/tls -> the working tree, for pytest.
SRC := $(BUILD)/src
SRC_LINK := $(SRC)/ansible_collections/crdb/tls
SANITY_ROOT := $(BUILD)/sanity
SANITY_TREE := $(SANITY_ROOT)/ansible_collections/crdb/tls
# containers.podman (for molecule's podman driver) lives in the venv's
# site-packages/ansible_collections, from the `ansible` package.
VENV_SITE = $(shell $(VENV_BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

TEST_STAGES := unit lint sanity integration peers molecule

.PHONY: help venv build install src-link unit integration peers sanity lint \
	molecule test demo clean distclean

help:
	@sed -n '1,11s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

# --- environment ----------------------------------------------------------------

venv: $(VENV_STAMP)

$(VENV_STAMP): requirements-dev.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r requirements-dev.txt
	touch $@

# --- build and install ----------------------------------------------------------

build: $(VENV_STAMP)
	mkdir -p $(BUILD)
	rm -f $(BUILD)/crdb-tls-*.tar.gz
	$(VENV_BIN)/ansible-galaxy collection build --force --output-path $(BUILD)
	test -f $(TARBALL)

install: build
	ANSIBLE_GALAXY_COLLECTIONS_PATH_WARNING=false \
		$(VENV_BIN)/ansible-galaxy collection install --offline --force \
		-p $(COLLECTIONS) $(TARBALL)

src-link:
	mkdir -p $(dir $(SRC_LINK))
	ln -sfn $(CURDIR) $(SRC_LINK)

# --- tests ----------------------------------------------------------------------

# pytest exits 5 when it collects no tests: tolerated (with a message) only
# while the test directory is still empty; every other failure counts.
unit: $(VENV_STAMP) src-link $(COMPAT_STAMP)
	PYTHONPATH=$(SRC) $(VENV_BIN)/pytest tests/unit
	@echo "unit: again with cryptography $(COMPAT_CRYPTOGRAPHY), the version Debian 12 nodes have"
	PYTHONPATH=$(SRC) $(COMPAT_VENV)/bin/pytest -q tests/unit

$(COMPAT_STAMP):
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		'cryptography==$(COMPAT_CRYPTOGRAPHY)' 'ansible-core>=2.19,<2.20' pytest
	touch $@

# ansible-test needs the ansible_collections/<ns>/<name> layout: run it in
# the installed copy of the built tarball. ansible-test lists content with
# the nearest git repo above the cwd, which would be this one (where build/
# is ignored, so no targets): the installed copy gets a git index of its own.
integration: install
	@if ! ls tests/integration/targets/*/tasks/main.yml >/dev/null 2>&1; then \
		echo "integration: no targets under tests/integration/targets yet, nothing to run"; exit 0; fi; \
	cd $(INSTALLED) && git init -q && git add -A && PATH=$(VENV_PATH) $(VENV_BIN)/ansible-test integration \
		--local --python 3.11 -v

peers: install src-link
	@if [ ! -d tests/peers ]; then echo "peers: tests/peers does not exist yet, nothing to run"; exit 0; fi; \
	rc=0; PYTHONPATH=$(SRC) ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) PATH=$(VENV_PATH) \
		$(VENV_BIN)/pytest tests/peers || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "peers: no tests collected in tests/peers yet"; rc=0; fi; \
	exit $$rc

# A copy (not a symlink) of the files git knows about (tracked, or untracked
# and not ignored), in a fresh git repo of its own: ansible-test sanity
# lists the collection's files with git.
# Skipped tests, and why:
#   none. No test needs docker or network beyond PyPI. (shellcheck comes
#   from prepare-host.sh; without it ansible-test skips that test with a
#   warning. pslint finds no PowerShell files.) --requirements lets
#   ansible-test fill its per-test venvs under ~/.ansible/test from PyPI.
# ansible-test bootstraps pip in those venvs with a get-pip.py downloaded from
# ci-files.testing.ansible.com, which CI cannot reach; it uses a cached copy
# first, so tests/scripts/get-pip-offline.py (ensurepip + PyPI) is put in the
# cache unless a real get-pip.py is already there.
ANSIBLE_TEST_PIP_VERSION = $(shell $(VENV_BIN)/python -c 'import types; \
	from ansible_test._internal.python_requirements import get_venv_packages as g; \
	print(g(types.SimpleNamespace(version="3.11"))["pip"])')
GET_PIP_CACHE = $(HOME)/.ansible/test/cache/get_pip_$(subst .,_,$(ANSIBLE_TEST_PIP_VERSION)).py

sanity: $(VENV_STAMP)
	test -n "$(ANSIBLE_TEST_PIP_VERSION)"
	test -f $(GET_PIP_CACHE) || install -D -m 0644 tests/scripts/get-pip-offline.py $(GET_PIP_CACHE)
	rm -rf $(SANITY_ROOT)
	mkdir -p $(SANITY_TREE)
	git ls-files -z --cached --others --exclude-standard \
		| tar --null --ignore-failed-read -T - -cf - \
		| tar -C $(SANITY_TREE) -xf -
	cd $(SANITY_TREE) && git init -q && git add -A
	cd $(SANITY_TREE) && PATH=$(VENV_PATH) $(VENV_BIN)/ansible-test sanity \
		--local --python 3.11 --requirements --color no

# crdb.tls resolves to the working tree (build/src), so playbooks using its
# modules pass syntax-check without a build.
# A HOME of its own: ansible-lint also looks in ~/.ansible/collections, where
# molecule's prerun leaves a copy of whatever checkout ran it last.
lint: $(VENV_STAMP) src-link
	mkdir -p $(BUILD)/lint-home
	HOME=$(BUILD)/lint-home ANSIBLE_COLLECTIONS_PATH=$(SRC):$(VENV_SITE) PATH=$(VENV_PATH) \
		$(VENV_BIN)/ansible-lint --profile production
	$(VENV_BIN)/antsibull-changelog lint

molecule: install
	VENV=$(CURDIR)/$(VENV) COLLECTIONS=$(COLLECTIONS) bash tests/scripts/run-molecule.sh

test:
	@declare -a done_stages=(); rc=0; failed=""; t0=$$SECONDS; \
	for stage in $(TEST_STAGES); do \
		echo; echo "=== make $$stage ==="; s=$$SECONDS; \
		if $(MAKE) --no-print-directory $$stage; then \
			done_stages+=("$$(printf '%-12s ok     %4d s' $$stage $$((SECONDS - s)))"); \
		else \
			rc=$$?; failed=$$stage; \
			done_stages+=("$$(printf '%-12s FAILED %4d s' $$stage $$((SECONDS - s)))"); \
			break; \
		fi; \
	done; \
	echo; echo "=== summary ==="; printf '%s\n' "$${done_stages[@]}"; \
	if [ -n "$$failed" ]; then echo "make test: FAILED at $$failed after $$((SECONDS - t0)) s"; exit $$rc; fi; \
	echo "make test: all stages passed in $$((SECONDS - t0)) s"

# --- demo -----------------------------------------------------------------------

demo: install
	@test -f playbooks/demo.yml || { echo "demo: playbooks/demo.yml does not exist yet"; exit 1; }
	ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) PATH=$(VENV_PATH) \
		$(VENV_BIN)/ansible-playbook -i playbooks/inventory/demo.yml playbooks/demo.yml

# --- cleaning -------------------------------------------------------------------

clean:
	rm -rf $(BUILD) demo-certs .pytest_cache tests/output
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .cache

# --- Go test programs -----------------------------------------------------------

# tests/go: the Go peer (crdb-peer) and the stand-in cockroach, test-only,
# built with Debian's golang-go into build/go/bin (tests/go/README.md).
.PHONY: go-build
go-build:
	bash tests/go/build.sh $(BUILD)/go/bin

peers: go-build
molecule: go-build

# --- benchmark ------------------------------------------------------------------

# Fleet benchmark (issue 5): crdb.tls vs the community.crypto way vs one ping
# per host, for N simulated hosts. BENCH_NS="5 20" for a quick run.
# Results in benchmarks/results/ (results.json, results.md, time_vs_n.png).
BENCH_NS ?= 5 20 50 100
BENCH_FORKS ?= 5

.PHONY: bench
bench: $(VENV_STAMP)
	$(VENV_BIN)/python -c 'import matplotlib' 2>/dev/null || \
		$(VENV_BIN)/python -m pip install --quiet --disable-pip-version-check matplotlib
	PATH=$(VENV_PATH) BENCH_NS="$(BENCH_NS)" BENCH_FORKS="$(BENCH_FORKS)" \
		$(VENV_BIN)/python benchmarks/run.py
