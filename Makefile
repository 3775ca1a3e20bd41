# secured-virt — set-up, demo, tests, benchmarks, lint.
#
#   make demo   the narrated tour on libvirt's test driver (does its own set-up)
#   make test   installs everything on a fresh Debian machine (as root) and runs the whole suite
#
# The venv lives outside the work tree and is built from Debian's /usr/bin/python3 so that
# other uids (tests run svirsh as real other users through setpriv) can execute it.

VENV      ?= /opt/secured-virt/venv
PY        := $(VENV)/bin/python
APT_PKGS  := libvirt-dev pkg-config gcc python3-venv python3-dev libvirt-daemon \
             libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils libvirt-clients libpam-wrapper \
             libpam0g util-linux python3-lxml python3-libvirt man-db
STAMP     := $(VENV)/.secured-virt-installed

.PHONY: setup apt venv native demo test unit bench lint format clean

setup: $(STAMP) native

apt:
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "apt: installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else echo "apt: not root, assuming packages are installed"; fi

$(STAMP): pyproject.toml setup.py Makefile | apt
	@test -x $(PY) || { mkdir -p $(dir $(VENV)) && /usr/bin/python3 -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip "setuptools>=77"
	$(PY) -m pip install -q -e '.[test,bench]'
	@# the console scripts run Python isolated (-I), like bin/: no PYTHONPATH, PYTHONSTARTUP or
	@# user site is read before secured-virt starts (pip writes no interpreter flags itself)
	for s in svirsh svirtd svirt-admin; do \
	  sed -i '1s|^#!\(/[^ ]*python[0-9.]*\)$$|#!\1 -I|' $(VENV)/bin/$$s && \
	  head -n 1 $(VENV)/bin/$$s | grep -qx '#!/[^ ]*python[0-9.]* -I' || \
	  { echo "$(VENV)/bin/$$s: cannot make it run python -I" >&2; exit 1; }; \
	done
	chmod -R a+rX $(dir $(VENV))
	@touch $@

venv: setup

# rbac's C index, built in place by the editable install; rebuilt here when its source changes
# or when this checkout has none yet (the venv may have been set up from another checkout)
native: $(STAMP)
	@so=$$(ls rbac/_native*.so 2>/dev/null | head -1); \
	if [ -z "$$so" ] || [ rbac/_native.c -nt "$$so" ]; then \
	  echo "native: building rbac/_native.c"; $(PY) setup.py -q build_ext --inplace; fi

demo: setup
	$(PY) -m secured_virt.demo

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

unit: setup
	$(PY) -m pytest -q -m 'not integration'

bench: setup
	$(PY) bench/run_all.py

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf build *.egg-info .pytest_cache
