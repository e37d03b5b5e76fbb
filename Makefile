# `make test` and `make demo` do the whole set-up on a fresh Debian machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Debian packages the test suite runs for real. mmdebstrap and systemd-container: the test hosts
# booted with systemd as PID 1 (tests/hosts, docs/testing.md); procps: the .deb depends on it;
# etcd-server: the fleet tests start a 3-member cluster on loopback (tests/fleet); nginx: the
# blue-green tests start one with its own prefix and config (tests/deploy/test_proxy_nginx.py).
DEBIAN_TEST_PACKAGES := minisign curl mount prometheus lintian dpkg-dev python3-venv systemd man-db tmux openssh-server openssh-client \
                        mmdebstrap systemd-container procps etcd-server nginx
# A venv every local user can run id1 from: the SSH end-to-end test logs in as a throwaway user.
E2E_VENV ?= /opt/id1-e2e-venv
# Parallel test workers: most tests wait on processes and health checks, so more than the cores.
TEST_WORKERS ?= 4

.PHONY: test bench debian-packages install-test e2e-venv clean demo

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

install-test: $(PY)
	$(PY) -m pip install --quiet -e '.[test]'

debian-packages:
	@missing=""; for p in $(DEBIAN_TEST_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" -ne 0 ]; then echo "make test needs these Debian packages:$$missing (run as root, or apt-get install them)"; exit 1; fi; \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# Made with Debian's python3, this checkout installed (not linked); rebuilt only when the sources changed.
e2e-venv: debian-packages $(PY)
	$(PY) -m tests.e2e.world_venv $(E2E_VENV)

# Two passes (tests/conftest.py): most tests on parallel workers, then the serial ones alone.
test: debian-packages install-test e2e-venv
	ID1_E2E_VENV=$(E2E_VENV) $(PY) -m pytest -m "not serial" -n $(TEST_WORKERS) --dist loadfile
	ID1_E2E_VENV=$(E2E_VENV) $(PY) -m pytest -m serial

# A sandboxed ID-1 host in .demo/ that plays out the agent's story in `id1 tui`; q ends everything.
demo: $(PY)
	$(PY) -m pip install --quiet -e '.[demo]'
	$(PY) -m agent.demo

bench: install-test
	$(PY) -m pytest tests/benchmarks -s

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .demo

# make deb: the Debian package in dist/ (packaging/deb.mk)
include packaging/deb.mk
