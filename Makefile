# Front doors: `make up` (local sandbox running the whole stack) and `make test` (all tests).
# Run as root on Debian 12. Everything is installed by the targets themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Debian's own interpreter: the same Python (3.11.2) as the hosts, so the wheelhouse
# built with it carries exactly the wheels the hosts need.
PYTHON      ?= /usr/bin/python3
VENV        ?= .venv
BIN         := $(abspath $(VENV))/bin
CACHE       ?= /var/cache/galatek
WHEELHOUSE  := $(CACHE)/wheelhouse
APT_PACKAGES := podman runc debootstrap python3-venv python3-packaging python3-cryptography \
                curl openssl chromium chromium-driver pebble
# Roles with Molecule scenarios; `make molecule ROLES=common` runs one role's scenarios.
ROLES       ?= $(sort $(foreach f,$(wildcard roles/*/molecule/*/molecule.yml),$(word 2,$(subst /, ,$(f)))))
# A Prefect release older than the pinned one, kept in the wheelhouse for the upgrade test.
PREFECT_PREVIOUS ?= 3.8.8

export PATH := $(BIN):$(PATH)
export ANSIBLE_ROLES_PATH := $(CURDIR)/roles
export GALATEK_ROLES_PATH := $(CURDIR)/roles
export GALATEK_WHEELHOUSE := $(WHEELHOUSE)
export GALATEK_TEST_IMAGE := $(shell tests/image/build.sh --name)
export ANSIBLE_FORCE_COLOR ?= 1

.PHONY: help up down test lint pytest fresh e2e molecule docs bench deps venv image wheelhouse lock preflight

help: ## List the targets
	@awk -F ':.*## ' '/^[a-z0-9-]+:.*## / { printf "  make %-11s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

up: deps venv image wheelhouse ## Sandbox host, site.yml on it, then one sample signup through the door
	$(BIN)/ansible-playbook playbooks/sandbox.yml
	$(BIN)/ansible-playbook site.yml
	$(BIN)/ansible-playbook playbooks/sample_signup.yml

down: preflight ## Remove the local sandbox host
	$(BIN)/ansible-playbook playbooks/sandbox.yml -e sandbox_state=absent

# The lanes run two phases, each side by side (output kept per lane): lint, the fast lane and
# the fresh machines first (nothing there times the recovery), then e2e and Molecule.
test: deps venv image wheelhouse ## Everything: lint, the fast lane, fresh machines, e2e, every Molecule scenario
	$(MAKE) --no-print-directory -j3 --output-sync=target lint pytest fresh
	$(MAKE) --no-print-directory -j2 --output-sync=target e2e molecule

lint: venv ## yamllint, ansible-lint (production profile), ruff
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --profile production
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

pytest: venv ## Fast lane, no test host: flow, fake APIs, repo and docs checks (pytest -m "not e2e")
	$(BIN)/pytest -m "not e2e"

fresh: deps venv image wheelhouse ## Fresh machines: the bootstrap from nothing, the production rehearsal (pytest -m fresh)
	$(BIN)/pytest -m fresh

e2e: deps venv image wheelhouse ## The whole path on a sandbox host: signups, the browser, recovery and restart drills
	$(BIN)/pytest -m "e2e and not fresh"

molecule: venv image wheelhouse ## Every role's Molecule scenario on real systemd hosts
	@for role in $(ROLES); do \
	  echo "=== molecule: $$role"; \
	  ( cd roles/$$role && MOLECULE_HOST=$${GALATEK_TEST_PREFIX:-}$$role $(BIN)/molecule test --all ) || exit 1; \
	done

docs: venv ## Regenerate the variable section of every role README from meta/argument_specs.yml
	$(BIN)/python -m tests.docs

bench: deps venv image wheelhouse ## Benchmark a fresh sandbox host (prints figures; ~30 min)
	$(BIN)/python -m tests.bench.bench

preflight:
	@[ "$$(id -u)" -eq 0 ] || { echo "error: run make as root (it installs Debian packages and runs podman)" >&2; exit 1; }

deps: preflight ## Debian packages the controller needs (installs what is missing, names what failed)
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  status=$$(dpkg-query -W -f='$${db:Status-Abbrev}' "$$p" 2>/dev/null || true); \
	  [[ $$status == ii* ]] || missing="$$missing $$p"; \
	done; \
	[ -z "$$missing" ] && exit 0; \
	echo "installing Debian packages:$$missing"; \
	apt-get update -qq || echo "warning: apt-get update failed; trying the package lists already here" >&2; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null 2>&1 \
	  || for p in $$missing; do DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$$p" >/dev/null 2>&1 || true; done; \
	failed=""; \
	for p in $$missing; do \
	  status=$$(dpkg-query -W -f='$${db:Status-Abbrev}' "$$p" 2>/dev/null || true); \
	  [[ $$status == ii* ]] || failed="$$failed $$p"; \
	done; \
	if [ -n "$$failed" ]; then \
	  echo "error: apt-get could not install:$$failed (unknown package, or no mirror reachable? see /etc/apt/sources.list*)" >&2; \
	  exit 1; \
	fi

venv: $(VENV)/.installed ## The pinned Python toolchain in .venv
$(VENV)/.installed: requirements.txt | deps
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt \
	  || { echo "error: pip could not install requirements.txt (is PyPI reachable?)" >&2; exit 1; }
	touch $@

image: deps ## The Debian 12 systemd test-host image (built once per recipe)
	tests/image/build.sh

wheelhouse: $(WHEELHOUSE)/.built ## Wheels the hosts install Prefect from (offline)
$(WHEELHOUSE)/.built: requirements.txt $(wildcard flows/requirements.txt) | venv
	mkdir -p $(WHEELHOUSE)
	$(BIN)/pip wheel -q --disable-pip-version-check -w $(WHEELHOUSE) -c requirements.txt \
	  prefect prefect-redis $(if $(wildcard flows/requirements.txt),-r flows/requirements.txt)
	$(BIN)/pip wheel -q --disable-pip-version-check -w $(WHEELHOUSE) prefect==$(PREFECT_PREVIOUS)
	touch $@

lock: ## Re-pin requirements.txt from requirements.in
	rm -rf /var/tmp/galatek-lock && $(PYTHON) -m venv /var/tmp/galatek-lock
	/var/tmp/galatek-lock/bin/pip install -q -r requirements.in
	{ echo '# Written by `make lock` from requirements.in: the full, pinned controller toolchain.'; \
	  /var/tmp/galatek-lock/bin/pip freeze; } > requirements.txt
	rm -rf /var/tmp/galatek-lock
