# secured-virt — install, set-up for development, demo, tests, benchmarks, lint.
#
#   make install     a host install: a non-editable build in $(PREFIX) (default /opt/secured-virt),
#                    svirsh/svirt-admin in $(BINDIR), svirtd in $(SBINDIR), man pages, bash
#                    completion, /etc/secured-virt (never overwritten), the PAM service, systemd
#                    units.  `make uninstall` removes it again (your /etc files and logs stay).
#   make demo        the narrated tour on libvirt's test driver (does its own set-up)
#   make test        installs everything on a fresh Debian machine (as root) and runs the suite
#
# Two Python environments, never the same one:
#   * the install prefix $(PREFIX): a venv holding a *built* copy (a wheel) of this tree, its
#     byte-code compiled at install time; nothing in it points back at the source tree, so
#     deleting or changing a checkout never changes the installed commands.
#   * the test venv $(VENV): an *editable* install of this checkout, one per checkout.  As root
#     it lives outside the work tree, in $(TEST_VENV_ROOT), because the tests run code as real
#     other users (setpriv) and a clone in a 0700 directory (CI's mktemp -d) is unreadable to
#     them; as another user, in .venv/ of the checkout.  `make install` never uses it.

# -- the host install ---------------------------------------------------------------------------
PREFIX      ?= /opt/secured-virt
DESTDIR     ?=
BINDIR      ?= /usr/local/bin
SBINDIR     ?= /usr/local/sbin
MANDIR      ?= /usr/local/share/man
DOCDIR      ?= /usr/local/share/doc/secured-virt
BASHCOMPDIR ?= /usr/local/share/bash-completion/completions
SYSCONFDIR  ?= /etc
PAMDIR      ?= $(SYSCONFDIR)/pam.d
UNITDIR     ?= /usr/local/lib/systemd/system
HOST_PYTHON ?= /usr/bin/python3
INSTALL_VARS = PREFIX='$(PREFIX)' DESTDIR='$(DESTDIR)' BINDIR='$(BINDIR)' SBINDIR='$(SBINDIR)' \
               MANDIR='$(MANDIR)' DOCDIR='$(DOCDIR)' BASHCOMPDIR='$(BASHCOMPDIR)' \
               SYSCONFDIR='$(SYSCONFDIR)' PAMDIR='$(PAMDIR)' UNITDIR='$(UNITDIR)' \
               HOST_PYTHON='$(HOST_PYTHON)' SRC='$(CURDIR)'
#: what a host install needs from Debian (libvirt-dev, gcc...: pip may build libvirt-python)
INSTALL_APT := python3-venv python3-dev gcc pkg-config libvirt-dev libpam0g man-db

# -- the test venv (one per checkout) -----------------------------------------------------------
TEST_VENV_ROOT ?= /var/cache/secured-virt-test
CHECKOUT_ID    := $(notdir $(CURDIR))-$(shell printf '%s' '$(CURDIR)' | sha256sum | cut -c1-12)
ifeq ($(shell id -u),0)
VENV ?= $(TEST_VENV_ROOT)/$(CHECKOUT_ID)
else
VENV ?= $(CURDIR)/.venv
endif
PY        := $(VENV)/bin/python
APT_PKGS  := libvirt-dev pkg-config gcc python3-venv python3-dev libvirt-daemon \
             libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils libvirt-clients libpam-wrapper \
             libpam0g util-linux python3-lxml python3-libvirt man-db \
             chromium chromium-driver
STAMP     := $(VENV)/.secured-virt-installed
#: a real LDAP directory for the group-role tests (secured_virt/testing/ldapdir.py): Debian's
#: slapd, ldap-utils, nslcd and libnss-ldapd are *unpacked* into $(LDAP_ROOT), never installed
#: (their maintainer scripts would rewrite /etc/nsswitch.conf and start daemons); only their
#: libraries come from apt.  Re-unpacked when the installed libldap's version changes.
LDAP_DEBS := slapd ldap-utils nslcd libnss-ldapd
LDAP_LIBS := libldap-2.5-0 libsasl2-2 libargon2-1 libltdl7 libwrap0 libgssapi-krb5-2
LDAP_ROOT ?= $(TEST_VENV_ROOT)/debian-ldap

.PHONY: setup apt venv native demo test unit bench lint format clean clean-venv print-venv \
        install uninstall install-apt reachable

# Debian packages: $(1) is the list; installs only what is missing (root only)
define apt_install
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "apt: installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else echo "apt: not root, assuming packages are installed"; fi
endef

install-apt:
	$(call apt_install,$(INSTALL_APT))

install: install-apt
	@env $(INSTALL_VARS) /bin/sh packaging/install.sh install

uninstall:
	@env $(INSTALL_VARS) /bin/sh packaging/install.sh uninstall

setup: $(STAMP) native

apt:
	$(call apt_install,$(APT_PKGS) $(LDAP_LIBS))
	@if [ "$$(id -u)" = 0 ]; then \
	  want=$$(dpkg-query -W -f '$${Version}' libldap-2.5-0) && \
	  if [ "$$(cat $(LDAP_ROOT)/.unpacked 2>/dev/null)" != "$$want" ]; then \
	    echo "apt: unpacking $(LDAP_DEBS) into $(LDAP_ROOT) (not installed: the host's NSS stays as it is)"; \
	    { test -d $(dir $(LDAP_ROOT)) || install -d -m 0755 $(dir $(LDAP_ROOT)); } && \
	    rm -rf $(LDAP_ROOT) $(LDAP_ROOT).dl && install -d -m 0755 $(LDAP_ROOT).dl && \
	    { chown _apt $(LDAP_ROOT).dl 2>/dev/null || true; } && \
	    { (cd $(LDAP_ROOT).dl && apt-get download -qq $(LDAP_DEBS)) || \
	      { apt-get update -qq && (cd $(LDAP_ROOT).dl && apt-get download -qq $(LDAP_DEBS)); }; } && \
	    for d in $(LDAP_ROOT).dl/*.deb; do dpkg-deb -x "$$d" $(LDAP_ROOT) || exit 1; done && \
	    chmod 0755 $(LDAP_ROOT) && rm -rf $(LDAP_ROOT).dl && echo "$$want" > $(LDAP_ROOT)/.unpacked; \
	  fi; fi

# The test venv.  As root its directory must be root's alone (it is run as root by the tests):
# $(TEST_VENV_ROOT) is created 0755 and refused if someone else owns it or may write to it.
$(STAMP): pyproject.toml setup.py Makefile | apt
	@if [ "$$(id -u)" = 0 ]; then \
	  install -d -m 0755 -o root -g root $(TEST_VENV_ROOT) && \
	  st=$$(stat -c '%u %a' $(TEST_VENV_ROOT)) && \
	  case "$$st" in "0 755"|"0 750"|"0 711"|"0 700") ;; \
	    *) echo "$(TEST_VENV_ROOT): owner/mode '$$st' — must be root's, writable by root only" >&2; exit 4;; \
	  esac; fi
	@test -x $(PY) || { mkdir -p $(dir $(VENV)) && $(HOST_PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip "setuptools>=77"
	$(PY) -m pip install -q -e '.[test,bench]'
	@# the console scripts run Python isolated (-I), like bin/: no PYTHONPATH, PYTHONSTARTUP or
	@# user site is read before secured-virt starts (pip writes no interpreter flags itself)
	@/bin/sh packaging/install.sh isolate-scripts $(VENV)/bin
	chmod -R a+rX $(VENV)
	@touch $@

venv: setup

print-venv:
	@echo $(VENV)

clean-venv:
	rm -rf $(VENV)

# rbac's C index, built in place by the editable install; rebuilt here when its source changes
# or when this checkout has none yet
native: $(STAMP)
	@so=$$(ls rbac/_native*.so 2>/dev/null | head -1); \
	if [ -z "$$so" ] || [ rbac/_native.c -nt "$$so" ]; then \
	  echo "native: building rbac/_native.c"; $(PY) setup.py -q build_ext --inplace; fi

demo: setup
	$(PY) -m secured_virt.demo

# The test venv's console scripts import this checkout (an editable install) also when the tests
# run them as other users.  A clone in a 0700 directory (mktemp -d) hides it from them, so as
# root the directories above the checkout that root owns get search permission (go+x: others
# may open paths they know, never list; g too, for a process whose effective uid changed but
# whose group is still root's): the checkout holds only the project's files.
reachable:
	@if [ "$$(id -u)" = 0 ] && ! setpriv --reuid=65534 --regid=65534 --clear-groups -- \
	    test -r $(CURDIR)/secured_virt/__init__.py 2>/dev/null; then \
	  d=$(CURDIR); while [ "$$d" != / ]; do \
	    if [ "$$(stat -c %u "$$d")" = 0 ] && [ -z "$$(find "$$d" -maxdepth 0 -perm -go+x)" ]; then \
	      echo "test: chmod go+x $$d (so the test users can reach this checkout)"; chmod go+x "$$d"; \
	    fi; d=$$(dirname "$$d"); done; fi

test: setup reachable
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	SVT_LDAP_ROOT=$(LDAP_ROOT) $(PY) -m pytest -q

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
