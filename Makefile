# Development and CI entry points for the crdb.tls collection.
#
#   make venv          the venv of the newest ansible-core (.venv-2.21, with
#                      .venv linked to it when there is no .venv yet)
#   make test          unit lint sanity integration peers molecule on the
#                      newest ansible-core, galaxy (importer) and matrix (unit
#                      sanity integration demo on the older ones), in two lanes
#                      at once (LANES=1: one after the other), with a summary
#   make <one of them> just that stage (on $(VENV): see VENV below)
#   make venv-2.19|venv-2.20|venv-2.21, host-floor, readmes
#   make build|install|demo|clean|distclean
#
# Host packages (podman, postgresql, ...) come from
# tests/scripts/prepare-host.sh; .ci/run does everything from a fresh clone.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# --- ansible-core releases tested (README "Tested with") -----------------------------
# Each has a venv of its own, .venv-<release>, from the Python given here.
# The newest runs every stage (make test); the older ones run unit, sanity,
# integration and the demo (make matrix).
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
ANSIBLE_RELEASES := 2.19 2.20 2.21
NEWEST := 2.21
OLDER := 2.19 2.20
PYTHON_2.19 := python3.11
PYTHON_2.20 := $(PYENV_ROOT)/versions/3.12.1/bin/python3
PYTHON_2.21 := $(PYENV_ROOT)/versions/3.13.0/bin/python3
CORE_2.19 := 'ansible-core>=2.19,<2.20'
CORE_2.20 := 'ansible-core>=2.20,<2.21'
CORE_2.21 := 'ansible-core>=2.21,<2.22'
# ansible (for containers.podman, molecule only: the newest's venv) goes with
# its ansible-core.
ANSIBLE_2.19 := 'ansible>=12,<13'
ANSIBLE_2.20 := 'ansible>=13,<14'
ANSIBLE_2.21 := 'ansible>=14,<15'

# VENV: the venv every stage target uses. An existing .venv (a directory, or
# a link such as one to a shared Python 3.11 venv) is used as it is and never
# reinstalled; otherwise the newest release's. make test and make matrix name
# theirs (VENV=.venv-<release>) whatever .venv is.
VENV ?= $(if $(wildcard .venv/bin/python),.venv,.venv-$(NEWEST))
VENV_BIN := $(CURDIR)/$(VENV)/bin
VENV_STAMP := $(VENV)/.crdb-tls-requirements.stamp
# The venv's tools first on PATH: ansible-test, molecule and ansible-lint
# start other tools (ansible-playbook, python3.x) by name.
VENV_PATH := $(VENV_BIN):$(PATH)
# The venv's Python version (3.11, 3.12, 3.13): what ansible-test runs with.
VENV_PY = $(shell $(VENV_BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV_CORE = $(shell $(VENV_BIN)/python -c 'from ansible.release import __version__; print(__version__)')

BUILD := $(CURDIR)/build
# The controller's cryptography floor (ledger.py needs 36 for
# rfc4514_attribute_name): the unit tests run again with it (UNIT_COMPAT=yes,
# the default; make matrix runs them once per release).
COMPAT_CRYPTOGRAPHY := 36.0.2
COMPAT_VENV = $(BUILD)/venv-py$(VENV_PY)-cryptography-$(COMPAT_CRYPTOGRAPHY)
COMPAT_STAMP = $(COMPAT_VENV)/.stamp
UNIT_COMPAT ?= yes
# The host floor: modules that run on the nodes are tested with the oldest
# Python each release supports on targets and RHEL 9's cryptography
# (make host-floor).
HOST_CRYPTOGRAPHY := 3.4.8
HOST_PYTHON_2.19 := 3.8.18
HOST_PYTHON_2.20 := 3.9.18
HOST_PYTHON_2.21 := 3.9.18

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
	molecule test demo clean distclean matrix galaxy readmes readmes-check host-floor \
	$(addprefix venv-,$(ANSIBLE_RELEASES))

help:
	@sed -n '1,14s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

# --- environment ----------------------------------------------------------------

# The newest release's venv, and .venv linked to it where there is no .venv.
venv: venv-$(NEWEST)
	@if [ ! -e .venv ] && [ ! -L .venv ]; then ln -s .venv-$(NEWEST) .venv; echo "venv: .venv -> .venv-$(NEWEST)"; fi

$(addprefix venv-,$(ANSIBLE_RELEASES)): venv-%: .venv-%/.crdb-tls-requirements.stamp

# The newest gets every tool (requirements-dev.txt); the older ones what
# unit, sanity, integration and the demo need (requirements-test.txt).
.venv-%/.crdb-tls-requirements.stamp: requirements-dev.txt requirements-test.txt
	test -n "$(CORE_$*)" || { echo "no ansible-core release $* (known: $(ANSIBLE_RELEASES))"; exit 1; }
	test -x .venv-$*/bin/python || $(PYTHON_$*) -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet --disable-pip-version-check $(CORE_$*) \
		$(if $(filter $*,$(NEWEST)),-r requirements-dev.txt $(ANSIBLE_$*),-r requirements-test.txt)
	touch $@

# An existing .venv is used as it is (see VENV above): never reinstalled.
.venv/.crdb-tls-requirements.stamp:
	@test -x .venv/bin/python || { echo ".venv has no bin/python: remove it and run make venv"; exit 1; }
	@echo "venv: using .venv as it is ($$(.venv/bin/python --version); make venv-$(NEWEST) VENV=.venv-$(NEWEST) for the newest)"

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

unit: $(VENV_STAMP) src-link
	PYTHONPATH=$(SRC) $(VENV_BIN)/pytest tests/unit
	@if [ "$(UNIT_COMPAT)" = yes ]; then \
		$(MAKE) --no-print-directory VENV=$(VENV) compat-venv; \
		echo "unit: again with cryptography $(COMPAT_CRYPTOGRAPHY), the controller's floor"; \
		PYTHONPATH=$(SRC) $(COMPAT_VENV)/bin/pytest -q tests/unit; fi

.PHONY: compat-venv
compat-venv: $(COMPAT_STAMP)

# Same Python and ansible-core as $(VENV), the floor's cryptography.
$(COMPAT_STAMP): $(VENV_STAMP)
	$(VENV_BIN)/python -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		'cryptography==$(COMPAT_CRYPTOGRAPHY)' 'ansible-core==$(VENV_CORE)' pytest
	touch $@

# ansible-test needs the ansible_collections/<ns>/<name> layout: run it in
# the installed copy of the built tarball. ansible-test lists content with
# the nearest git repo above the cwd, which would be this one (where build/
# is ignored, so no targets): the installed copy gets a git index of its own.
integration: install
	@if ! ls tests/integration/targets/*/tasks/main.yml >/dev/null 2>&1; then \
		echo "integration: no targets under tests/integration/targets yet, nothing to run"; exit 0; fi; \
	cd $(INSTALLED) && git init -q && git add -A && PATH=$(VENV_PATH) $(VENV_BIN)/ansible-test integration \
		--local --python $(VENV_PY) -v $(INTEGRATION_ARGS)

# The older releases (make matrix): the targets of the controller-side
# modules here, the host-side ones (HOST_FLOOR_TARGETS) in make host-floor
# with the oldest host Python, so each target runs once per release.
.PHONY: integration-controller
integration-controller:
	$(MAKE) --no-print-directory VENV=$(VENV) integration \
		INTEGRATION_ARGS="$(addprefix --exclude ,$(HOST_FLOOR_TARGETS))"

# peers-clock: the peers tests that wait for the real clock to run through
# certificate lifetimes (mostly asleep); peers-rest: all the others. make test
# runs them in different lanes; make peers runs both.
PEERS_CLOCK := tests/peers/test_short_lived.py
PEERS_SELECT ?= tests/peers
.PHONY: peers-clock peers-rest
peers-clock:
	$(MAKE) --no-print-directory VENV=$(VENV) peers PEERS_SELECT="$(PEERS_CLOCK)"
peers-rest:
	$(MAKE) --no-print-directory VENV=$(VENV) peers PEERS_SELECT="tests/peers $(addprefix --ignore=,$(PEERS_CLOCK))"

peers: install src-link
	@if [ ! -d tests/peers ]; then echo "peers: tests/peers does not exist yet, nothing to run"; exit 0; fi; \
	rc=0; PYTHONPATH=$(SRC) ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) PATH=$(VENV_PATH) \
		$(VENV_BIN)/pytest $(PEERS_SELECT) || rc=$$?; \
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
	print(g(types.SimpleNamespace(version="$(VENV_PY)"))["pip"])')
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
		--local --python $(VENV_PY) --requirements --color no $(SANITY_ARGS)

# crdb.tls resolves to the working tree (build/src), so playbooks using its
# modules pass syntax-check without a build.
# A HOME of its own: ansible-lint also looks in ~/.ansible/collections, where
# molecule's prerun leaves a copy of whatever checkout ran it last.
lint: $(VENV_STAMP) src-link
	mkdir -p $(BUILD)/lint-home
	HOME=$(BUILD)/lint-home ANSIBLE_COLLECTIONS_PATH=$(SRC):$(VENV_SITE) PATH=$(VENV_PATH) \
		$(VENV_BIN)/ansible-lint --profile production
	$(VENV_BIN)/antsibull-changelog lint
	$(VENV_BIN)/python tests/scripts/role-readmes.py --check

molecule: install
	VENV=$(CURDIR)/$(VENV) COLLECTIONS=$(COLLECTIONS) bash tests/scripts/run-molecule.sh

# Everything on the newest release, the importer, and the older releases'
# matrix, in two lanes at once (tests/scripts/run-lanes.sh: what keeps them
# apart; LANES=1 runs them one after the other). Lane A: the newest's stages
# but molecule, the middle release's matrix, then the oldest release's
# host-floor and demo-rerun; lane B: molecule, the importer, the clock-bound
# peers tests, then the rest of the oldest release's matrix.
MATRIX_STAGES := unit sanity integration-controller host-floor demo-rerun
MATRIX_STEPS = $(foreach rel,$(OLDER),$(addsuffix @$(rel),$(MATRIX_STAGES)))
# The oldest release's last two stages go to lane A, which is shorter.
MATRIX_TAIL := host-floor demo-rerun
LANE_A_STEPS = $(addsuffix @$(NEWEST),$(subst peers,peers-rest,$(filter-out molecule,$(TEST_STAGES))) host-floor) \
	$(addsuffix @$(lastword $(OLDER)),$(MATRIX_STAGES)) $(addsuffix @$(firstword $(OLDER)),$(MATRIX_TAIL))
LANE_B_STEPS = $(addsuffix @$(NEWEST),molecule galaxy peers-clock) \
	$(addsuffix @$(firstword $(OLDER)),$(filter-out $(MATRIX_TAIL),$(MATRIX_STAGES)))

test:
	bash tests/scripts/run-lanes.sh $(NEWEST) "$(LANE_A_STEPS)" "$(LANE_B_STEPS)"

# unit, sanity, integration, the host floor and the demo on the older releases.
matrix:
	LANES=1 bash tests/scripts/run-lanes.sh $(NEWEST) "$(MATRIX_STEPS)" ""

# --- the host floor ----------------------------------------------------------------

# The host-side integration targets (modules that run on the nodes) with the
# oldest host Python $(VENV)'s release supports and RHEL 9's cryptography, as
# the hosts' Python (testhost's ansible_python_interpreter); the controller
# side runs in $(VENV) as always (tests/host-floor/targets.yml).
HOST_FLOOR_TARGETS := install certs_info expiry_check node_key reload host_without_cryptography
VENV_REL = $(shell $(VENV_BIN)/python -c 'from ansible.release import __version__ as v; print(".".join(v.split(".")[:2]))')
HOST_FLOOR_PY = $(HOST_PYTHON_$(VENV_REL))
HOST_FLOOR_VENV = $(BUILD)/host-py$(HOST_FLOOR_PY)-cryptography-$(HOST_CRYPTOGRAPHY)

host-floor: install
	test -n "$(HOST_FLOOR_PY)" || { echo "host-floor: no host floor for ansible-core $(VENV_REL)"; exit 1; }
	test -x $(HOST_FLOOR_VENV)/bin/python || { \
		$(PYENV_ROOT)/versions/$(HOST_FLOOR_PY)/bin/python3 -m venv $(HOST_FLOOR_VENV) && \
		$(HOST_FLOOR_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
			'cryptography==$(HOST_CRYPTOGRAPHY)'; }
	printf '%s\n' '[floor]' 'testhost ansible_connection=local ansible_python_interpreter=$(HOST_FLOOR_VENV)/bin/python' \
		> $(BUILD)/host-floor.ini
	@echo "host-floor: ansible-core $(VENV_CORE), hosts on $$($(HOST_FLOOR_VENV)/bin/python -c \
		'import sys, cryptography; print("Python %d.%d.%d" % sys.version_info[:3], "cryptography", cryptography.__version__)')"
	ANSIBLE_ROLES_PATH=$(CURDIR)/tests/integration/targets ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) \
		ANSIBLE_LOCALHOST_WARNING=false PATH=$(VENV_PATH) $(VENV_BIN)/ansible-playbook -i $(BUILD)/host-floor.ini \
		-e 'host_floor_targets="$(HOST_FLOOR_TARGETS)"' \
		tests/host-floor/targets.yml

# --- Galaxy -------------------------------------------------------------------------

# galaxy-importer on the built tarball, as Galaxy runs it on upload, offline
# (tests/galaxy-importer.cfg: no ansible-test container; ansible-lint and
# ansible-doc run), in a venv of its own (it pins ansible-lint and attrs).
GALAXY_IMPORTER := galaxy-importer==0.4.44
GALAXY_VENV := $(BUILD)/venv-galaxy-importer
GALAXY_STAMP := $(GALAXY_VENV)/.stamp

$(GALAXY_STAMP):
	$(PYTHON_$(NEWEST)) -m venv $(GALAXY_VENV)
	$(GALAXY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check '$(GALAXY_IMPORTER)' $(CORE_$(NEWEST))
	touch $@

galaxy: build readmes-check $(GALAXY_STAMP)
	rm -rf $(BUILD)/galaxy-importer && mkdir -p $(BUILD)/galaxy-importer
	cd $(BUILD)/galaxy-importer && GALAXY_IMPORTER_CONFIG=$(CURDIR)/tests/galaxy-importer.cfg \
		PATH=$(GALAXY_VENV)/bin:$(PATH) $(GALAXY_VENV)/bin/python -m galaxy_importer.main \
		--output-path $(BUILD)/galaxy-importer $(TARBALL) 2>&1 | tee $(BUILD)/galaxy-importer/import.log
	@! grep -E '^(ERROR|WARNING)' $(BUILD)/galaxy-importer/import.log || \
		{ echo "galaxy: the importer reported the errors or warnings above"; exit 1; }
	@python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); \
		print("galaxy: importer accepted crdb.tls", r["metadata"]["version"], "with", len(r["contents"]), "content items")' \
		$(BUILD)/galaxy-importer/importer_result.json
	@echo "galaxy: ansible-builder finds the collection's Python requirements (meta/execution-environment.yml)"
	$(MAKE) --no-print-directory install
	$(GALAXY_VENV)/bin/ansible-builder introspect $(COLLECTIONS) | tee $(BUILD)/galaxy-importer/introspect.txt
	grep -q 'cryptography>=36' $(BUILD)/galaxy-importer/introspect.txt
	@echo "galaxy: the example execution environment (docs/examples) is valid for ansible-builder"
	rm -rf $(BUILD)/ee-context $(BUILD)/ee-src && mkdir -p $(BUILD)/ee-src
	cp docs/examples/execution-environment.yml docs/examples/requirements.yml $(BUILD)/ee-src/
	cp $(TARBALL) $(BUILD)/ee-src/crdb-tls.tar.gz
	cd $(BUILD)/ee-src && $(GALAXY_VENV)/bin/ansible-builder create -f execution-environment.yml \
		-c $(BUILD)/ee-context --output-filename Containerfile
	test -s $(BUILD)/ee-context/Containerfile

# Each role's README.md comes from its meta/argument_specs.yml.
readmes: $(VENV_STAMP)
	$(VENV_BIN)/python tests/scripts/role-readmes.py

readmes-check: $(VENV_STAMP)
	$(VENV_BIN)/python tests/scripts/role-readmes.py --check

# --- demo -----------------------------------------------------------------------

demo: install
	@test -f playbooks/demo.yml || { echo "demo: playbooks/demo.yml does not exist yet"; exit 1; }
	ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) PATH=$(VENV_PATH) \
		$(VENV_BIN)/ansible-playbook -i playbooks/inventory/demo.yml playbooks/demo.yml

# The demo in a fresh dir, then again: the rerun must change nothing (make matrix).
.PHONY: demo-rerun
demo-rerun: install
	rm -rf $(BUILD)/demo-rerun && mkdir -p $(BUILD)/demo-rerun
	CRDB_TLS_DEMO_DIR=$(BUILD)/demo-rerun ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) PATH=$(VENV_PATH) \
		$(VENV_BIN)/ansible-playbook -i playbooks/inventory/demo.yml playbooks/demo.yml > $(BUILD)/demo-rerun/first.log
	tail -6 $(BUILD)/demo-rerun/first.log
	CRDB_TLS_DEMO_DIR=$(BUILD)/demo-rerun ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) PATH=$(VENV_PATH) \
		$(VENV_BIN)/ansible-playbook -i playbooks/inventory/demo.yml playbooks/demo.yml > $(BUILD)/demo-rerun/again.log
	tail -6 $(BUILD)/demo-rerun/again.log
	@! grep -E 'changed=[1-9]' $(BUILD)/demo-rerun/again.log || { echo "demo-rerun: the rerun changed something"; exit 1; }
	@grep -qE '^node1 +: ok=[1-9]' $(BUILD)/demo-rerun/again.log
	@echo "demo-rerun: the rerun changed nothing"

# --- release ----------------------------------------------------------------------

# make release NEW_VERSION=x.y.z: sets galaxy.yml's version and releases the
# changelog (every fragment not yet released goes into CHANGELOG.rst and
# changelogs/changelog.yaml). Commit that with the tombstones in
# meta/runtime.yml for what the release removes (a tombstone's removal_version
# may not be later than galaxy.yml's version: ansible-test runtime-metadata).
.PHONY: release
release: $(VENV_STAMP)
	@echo "$(NEW_VERSION)" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$$' || { echo "release: NEW_VERSION=x.y.z is required"; exit 1; }
	sed -i 's/^version:.*/version: $(NEW_VERSION)/' galaxy.yml
	PATH=$(VENV_PATH) $(VENV_BIN)/antsibull-changelog release --version $(NEW_VERSION)
	$(VENV_BIN)/antsibull-changelog lint

# --- cleaning -------------------------------------------------------------------

clean:
	rm -rf $(BUILD) demo-certs .pytest_cache tests/output
	find . -path './.venv*' -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf .venv $(addprefix .venv-,$(ANSIBLE_RELEASES)) .cache

# --- Go test programs -----------------------------------------------------------

# tests/go: the Go peer (crdb-peer) and the stand-in cockroach, test-only,
# built with Debian's golang-go into build/go/bin (tests/go/README.md).
.PHONY: go-build
go-build:
	bash tests/go/build.sh $(BUILD)/go/bin

peers: go-build
molecule: go-build

# --- benchmark ------------------------------------------------------------------

# Fleet benchmark: crdb.tls vs the community.crypto way vs one ping
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
