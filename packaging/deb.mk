# The Debian package of the agent. Included by the Makefile; also works alone:
#   make -f packaging/deb.mk deb
#
#   deb              dist/id1-agent_VERSION_ARCH.deb (the agent in its own venv under /opt/id1)
#   deb-lint         lintian on it: fails on any error
#   deb-test         build it, lint it, install it here, try it and purge it (root; tests/packaging)
#   deb-constraints  re-pin packaging/constraints.txt to what pip resolves today
#   deb-clean        remove dist/*.deb and build/deb
#
# Needs Debian's python3 with venv, dpkg-dev (dpkg-shlibdeps) and, for deb-lint, lintian:
# the Debian packages listed in DEB_PACKAGES. Downloads are cached in DEB_PIP_CACHE.
DEB_SAVED_GOAL := $(.DEFAULT_GOAL)
DEB_PYTHON     ?= /usr/bin/python3
DEB_PACKAGES   := python3-venv dpkg-dev lintian systemd
DEB_PIP_CACHE  ?= $(CURDIR)/build/pip-cache
DEB_VERSION    := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' agent/__init__.py)
DEB_ARCH       := $(shell dpkg --print-architecture 2>/dev/null)
DEB_FILE       := dist/id1-agent_$(DEB_VERSION)_$(DEB_ARCH).deb
DEB_TEST_PY    ?= $(or $(wildcard .venv/bin/python),python3)

.PHONY: deb deb-lint deb-test deb-constraints deb-clean

deb:
	PIP_CACHE_DIR="$(DEB_PIP_CACHE)" $(DEB_PYTHON) packaging/build_deb.py --out dist --work build/deb

deb-lint: deb
	lintian --fail-on error --display-info --allow-root $(DEB_FILE)

deb-test:
	$(DEB_TEST_PY) -m pytest tests/packaging -v

# The wheel `deb` built, installed without constraints: what its dependencies resolve to today.
deb-constraints: deb
	rm -rf build/deb-constraints
	$(DEB_PYTHON) -m venv build/deb-constraints
	PIP_CACHE_DIR="$(DEB_PIP_CACHE)" build/deb-constraints/bin/python -m pip install --quiet --only-binary :all: build/deb/wheel/id1_agent-*.whl
	{ sed -n '/^#/p' packaging/constraints.txt; \
	  build/deb-constraints/bin/python -m pip freeze --exclude-editable | grep -v '^id1-agent' ; } > packaging/constraints.txt.new
	mv packaging/constraints.txt.new packaging/constraints.txt
	rm -rf build/deb-constraints

deb-clean:
	rm -rf build/deb dist/id1-agent_*.deb

# Wherever the Makefile includes this file, its own default goal stays the default.
.DEFAULT_GOAL := $(DEB_SAVED_GOAL)
