"""What a new host admin tripped over (issue 19, "Friction found on the way"), reproduced on
the real commands: svirt-admin status, check, add-role, policy load; svirsh restore and
shutdown; denials of a real account that has no roles.  A real svirtd on the libvirt test
driver with sHype/ACM on; svirsh as root in direct mode and as real other uids."""

from __future__ import annotations

import os
import pwd
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from cli_helpers import RealEnv, admin, svirsh, write_root_file

import policy

pytestmark = pytest.mark.integration


@pytest.fixture
def host(test_users, readable_src):
    if os.geteuid() != 0:
        pytest.skip("svirtd's policy files must be root-owned: run as root")
    env = RealEnv(acm="yes", audit_syslog="yes")
    env.d = env.daemon().start().wait_ready()
    env.users = test_users
    env.src = readable_src
    yield env
    env.d.stop()
    env.cleanup()


def _wait(cond, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


# -- svirt-admin status -----------------------------------------------------------------------
def test_status_shows_times_and_errors_as_lines_not_python(host):
    # a broken UA: the reload is rejected and its error spans lines
    write_root_file(host.ua, "<UserConfiguration>\n  <User name='x'>\n</UserConfiguration>\n")
    r = admin(host, "reload")
    assert r.rc != 0, str(r)
    r = admin(host, "status")
    assert r.rc == 0, str(r)
    out = r.stdout
    # loaded_at: a date, not an epoch
    m = re.search(r"loaded_at: (.*)", out)
    assert m and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+", m.group(1)), out
    # no Python list or dict reprs, no None
    assert "['" not in out and "{'" not in out and ": None" not in out, out
    # every reload error on lines of its own, under "errors:"
    errors = out.split("    errors:\n", 1)[1]
    assert errors.startswith("      - "), out
    assert "ua.xml" in errors.split("\n", 1)[0]


def test_audit_syslog_without_dev_log_is_said_once_and_in_status(host):
    r = admin(host, "status")
    if os.path.exists("/dev/log"):
        assert "  syslog: yes" in r.stdout, r.stdout
        return
    assert "audit_syslog = yes, but there is no /dev/log" in r.stdout, r.stdout
    _wait(lambda: "no /dev/log" in host.d.log(), "svirtd's warning")
    assert host.d.log().count("there is no /dev/log") == 1, host.d.log()


# -- a real account with no roles -------------------------------------------------------------
def test_a_real_account_without_roles_has_no_roles_not_unknown(host):
    nobody = pwd.getpwnam("nobody")
    r = admin(host, "check", "nobody", "start", "alice-web", "--explain")
    assert r.rc == 3, str(r)
    assert "user 'nobody' has no roles" in r.stdout and "unknown" not in r.stdout, str(r)
    r = svirsh(host, nobody, "start", "alice-web", src=host.src)
    assert r.rc == 3, str(r)
    assert "user 'nobody' has no roles" in r.stderr and "unknown" not in r.stderr, str(r)
    # a name that is no account at all keeps rbac's word
    r = admin(host, "check", "no-such-account-x", "start", "alice-web")
    assert "user 'no-such-account-x' unknown" in r.stdout, str(r)


def test_check_names_each_half_under_its_verdict(host):
    r = admin(host, "check", "svt-alice", "start", "alice-db", "--explain")
    assert r.rc == 0, str(r)
    lines = r.stdout.splitlines()
    assert lines[0] == "ALLOWED: svt-alice start (operation 6) on alice-db"
    assert lines[1].startswith("  RBAC: allowed - ") and lines[2].startswith("  ACM: allowed")
    assert "RBAC (roles in UA/PA):" in r.stdout
    assert "  RBAC decision: ALLOWED" in r.stdout
    assert not any(line.startswith("decision:") for line in lines), r.stdout


# -- svirt-admin add-role without -y --------------------------------------------------------------
def test_add_role_not_confirmed_does_not_say_it_was_added(host):
    before = host.pa.read_bytes()
    r = admin(host, "add-role", "Spare", input="n\n")
    assert r.rc == 1, str(r)
    assert "added role Spare\n" not in r.stdout, r.stdout
    assert "added role Spare (proposed)" in r.stdout and r.stdout.rstrip().endswith("not installed")
    assert host.pa.read_bytes() == before
    r = admin(host, "add-role", "Spare", "--yes")
    assert r.rc == 0 and "added role Spare\n" in r.stdout, str(r)


# -- sHype policy load order ---------------------------------------------------------------
def test_policy_load_blocked_by_running_vms_says_the_order_and_no_raw_codes(host):
    client = str(policy.examples()["example.client_v1"])
    r = admin(host, "policy", "load", client, "--dry-run")
    assert r.rc == 1, str(r)
    assert not re.search(r"\(0x[0-9a-f]+, 0x[0-9a-f]+\)", r.stdout), r.stdout
    assert "would lose access to resource" in r.stdout
    for text in (r.stdout, admin(host, "policy", "load", client).stderr):
        assert "1. stop those VMs: svirsh shutdown VM" in text, text
        assert "2. load the policy: svirt-admin policy load" in text
        assert "3. label each VM and its disks" in text and "setlabel --resource" in text
        assert "4. start them again" in text

    # the order works: stop, load, label, start (through svirtd, which holds the host's state)
    def root(*args):
        return svirsh(host, None, "--daemon", "--socket", host.socket, *args, raw=True)

    for vm in ("alice-web", "bob-build", "carol-lab", "shared-dns"):
        assert root("destroy", vm).rc == 0
    r = admin(host, "policy", "load", client)
    assert r.rc == 0, str(r)
    for args in (
        ("setlabel", "alice-web", "dom_HomeBanking"),
        (
            "setlabel",
            "file:/var/lib/libvirt/images/alice-web.qcow2",
            "--resource",
            "res_LogicalDiskPartition1(hda1)",
        ),
        ("start", "alice-web"),
    ):
        r = root(*args)
        assert r.rc == 0, f"{args}: {r}"


# -- svirsh restore and shutdown -----------------------------------------------------------------
def test_a_failed_restore_names_the_path_once(host):
    r = svirsh(host, None, "restore", "/nonexistent/x.save")
    assert r.rc == 1, str(r)
    assert r.stderr.count("/nonexistent/x.save") == 1, r.stderr
    assert "No such file or directory" in r.stderr


@pytest.mark.parametrize("through", ["direct", "svirtd"])
def test_shutdown_says_a_guest_without_os_ignores_it_and_points_at_destroy(host, through):
    who = None if through == "direct" else host.users["svt-alice"]
    r = svirsh(host, who, "shutdown", "alice-web", src=host.src)
    assert r.rc == 0, str(r)
    assert r.stdout == "Domain 'alice-web' is being shutdown\n\n"  # virsh's, byte for byte
    assert "without an operating system or ACPI support ignores it" in r.stderr
    assert "'svirsh destroy alice-web' stops it" in r.stderr
    if through == "direct":  # a fresh test-driver connection each time: alice-web runs again
        r = svirsh(host, who, "--json", "shutdown", "alice-web")
        assert '"note"' in r.stdout and r.stderr == "", str(r)
