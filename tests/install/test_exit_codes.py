"""One exit-code table for every command (README: 0 ok, 1 failed in the hypervisor or the
operation, 2 usage, 3 denied (RBAC, ACM, identity, PAM), 4 bad policy or configuration),
enforced by running each command's failure modes for real (issue 19).

svirsh runs as root in direct mode and as real other uids (svt-alice; a uid with no passwd
entry) through a real svirtd on the libvirt test driver with sHype/ACM on; svirt-admin as root.
Each row is (who, argv, exit status, words the message must carry).  Rows are failures that
change nothing, so one daemon serves them all; the few rows that need a state set it up."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from cli_helpers import RealEnv, admin, svirsh, write_root_file

import policy

pytestmark = pytest.mark.integration

OK, FAILED, USAGE, DENIED, BAD = 0, 1, 2, 3, 4
GHOST_UID = 54321  # no passwd entry (checked by the fixture)

ROOT = None
ALICE = "svt-alice"  # WebTeam: alice-web, alice-db (demo PA)

# -- svirsh ---------------------------------------------------------------------------------
SVIRSH = [
    # usage: the command line itself is wrong
    (ROOT, [], USAGE, "usage: svirsh"),
    (ROOT, ["no-such-command"], USAGE, "no-such-command"),
    (ROOT, ["--no-such-option", "list"], USAGE, "unknown option"),
    (ROOT, ["start"], USAGE, "domain"),
    (ROOT, ["setmem", "alice-web", "lots"], USAGE, "lots"),
    (ROOT, ["define", "/nonexistent/vm.xml"], USAGE, "cannot read /nonexistent/vm.xml"),
    (ALICE, ["list", "--connect", "test:///default"], USAGE, "unrecognized arguments"),
    (ALICE, ["--connect", "test:///default", "list"], USAGE, "--connect is only for direct"),
    # usage: a label the active policy does not define (it does not exist, so nothing to deny)
    (ROOT, ["setlabel", "alice-db", "no_such_label"], USAGE, "not a VM label of policy DEFAULT"),
    (ROOT, ["relabel", "alice-web", "no_such_label"], USAGE, "not a VM label of policy DEFAULT"),
    (
        ROOT,
        ["setlabel", "/var/lib/libvirt/images/x.img", "no_such_label", "--resource"],
        USAGE,
        "not a resource label",
    ),
    # denied: RBAC, ACM, identity
    (ALICE, ["start", "bob-build"], DENIED, "refused by the rbac check"),
    (ALICE, ["start", "no-such-vm"], DENIED, "refused by the rbac check"),
    (ALICE, ["dry-run", "alice-web"], DENIED, "refused by the rbac check"),
    (ALICE, ["setlabel", "alice-db", "SystemManagement"], DENIED, "not with the label"),
    (ALICE, ["--as", "svt-bob", "list"], DENIED, "svt-alice"),
    (ALICE, ["--direct", "list"], DENIED, "direct mode is for root"),
    (GHOST_UID, ["list"], DENIED, f"uid {GHOST_UID} has no passwd entry"),
    (GHOST_UID, ["start", "alice-web"], DENIED, f"uid {GHOST_UID} has no passwd entry"),
    # denied by the mandatory policy's check, as the dry run reports it: "Dry Run: FAILED"
    (ROOT, ["dry-run", "alice-web"], DENIED, ""),
    # failed: the hypervisor (or the operation) failed
    (ROOT, ["start", "no-such-vm"], FAILED, "failed to get domain 'no-such-vm'"),
    (ROOT, ["destroy", "alice-db"], FAILED, "is not running"),
    (ROOT, ["resume", "alice-web"], FAILED, "not paused"),
    (ROOT, ["restore", "/nonexistent.save"], FAILED, "cannot read save image /nonexistent.save"),
    (ROOT, ["setlabel", "alice-web", "SystemManagement"], FAILED, "is running: use"),
    # ok
    (ROOT, ["list", "--all"], OK, ""),
    (ALICE, ["list", "--all"], OK, ""),
]


@pytest.fixture(scope="module")
def host(test_users, readable_src):
    if os.geteuid() != 0:
        pytest.skip("svirtd's policy files must be root-owned: run as root")
    import pwd

    with pytest.raises(KeyError):
        pwd.getpwuid(GHOST_UID)
    env = RealEnv(acm="yes")
    env.d = env.daemon().start().wait_ready()
    env.users = test_users
    env.src = readable_src
    yield env
    env.d.stop()
    env.cleanup()


def _who(host, who):
    return host.users[who] if isinstance(who, str) else who


@pytest.mark.parametrize(("who", "argv", "status", "words"), SVIRSH, ids=lambda v: str(v))
def test_svirsh_exit_status(host, who, argv, status, words):
    r = svirsh(host, _who(host, who), *argv, src=host.src)
    assert r.rc == status, f"svirsh {' '.join(argv)} as {who or 'root'}:\n{r}"
    assert words in r.stdout + r.stderr, str(r)


def test_svirsh_without_svirtd_fails_and_a_bad_config_is_4(host):
    alice = host.users[ALICE]
    r = svirsh(host, alice, "--socket", "/nonexistent/svirtd.sock", "list", src=host.src, raw=True)
    assert r.rc == FAILED and "svirtd is not running" in r.stderr, str(r)
    r = svirsh(host, None, "--config", "/nonexistent.conf", "list", raw=True)
    assert r.rc == BAD and "no such configuration file" in r.stderr, str(r)
    # only root may choose the configuration: for anyone else that is refused as config
    r = svirsh(host, alice, "--config", str(host.config), "--direct", "list", raw=True)
    assert r.rc in (DENIED, BAD), str(r)


def test_dry_run_prints_failed_and_exits_denied_passed_exits_ok(host):
    r = svirsh(host, None, "dry-run", "alice-web")  # already running: starting is refused
    assert r.rc == DENIED and "Dry Run: FAILED" in r.stdout, str(r)
    r = svirsh(host, None, "dry-run", "alice-db")  # shut off, unlabelled disks of DEFAULT
    assert r.rc == OK and "Dry Run: PASSED" in r.stdout, str(r)


# -- svirt-admin ----------------------------------------------------------------------------
ADMIN = [
    ([], USAGE, "usage"),
    (["no-such-command"], USAGE, "no-such-command"),
    (["check", "svt-alice", "no-such-op", "alice-web"], USAGE, "no-such-op"),
    (["check", "svt-alice", "start", "bob-build"], DENIED, "RBAC: denied"),
    (["check", "nobody", "start", "alice-web"], DENIED, "has no roles"),
    (["check", "svt-alice", "start", "alice-db"], OK, "RBAC: allowed"),
    (["edit", "ua", "--tty"], USAGE, "not a terminal"),
    (["policy", "load"], USAGE, "FILE is required"),
    (["policy", "no-such-action"], USAGE, "no-such-action"),
]


@pytest.mark.parametrize(("argv", "status", "words"), ADMIN, ids=lambda v: str(v))
def test_svirt_admin_exit_status(host, argv, status, words):
    argv = [a for a in argv if a != "--tty"]  # edit: no --no-tty, as an admin would type it
    r = admin(host, *argv)
    assert r.rc == status, f"svirt-admin {' '.join(argv)}:\n{r}"
    assert words in r.stdout + r.stderr, str(r)


def test_svirt_admin_bad_policy_and_config_are_4(host, tmp_path):
    bad = write_root_file(tmp_path / "ua.xml", "<UserConfiguration><User></UserConfiguration>")
    r = admin(host, "validate", "--ua", str(bad))
    assert r.rc == BAD, str(r)
    r = admin(host, "validate", "--policy", str(bad))
    assert r.rc == BAD, str(r)
    from cli_helpers import PY, REPO, _run

    r = _run([PY, "-I", "-c", _admin_code(REPO), "--config", "/nonexistent.conf", "validate"])
    assert r.rc == BAD and "no such configuration file" in r.stderr, str(r)


def _admin_code(repo) -> str:
    return (
        f"import sys; sys.path.insert(0, {str(repo)!r}); "
        "from secured_virt.cli.admin import main; sys.exit(main(sys.argv[1:]))"
    )


def test_svirt_admin_policy_load_refused_by_running_vms_is_1(host):
    client = str(policy.examples()["example.client_v1"])
    r = admin(host, "policy", "load", client, "--dry-run")
    assert r.rc == FAILED and "would be REFUSED" in r.stdout, str(r)
    r = admin(host, "policy", "load", client)
    assert r.rc == FAILED and "nothing was changed" in r.stderr, str(r)


def test_svirt_admin_status_for_a_uid_without_passwd_entry_is_3(host, readable_src):
    """svirtd refuses to serve a uid it cannot name; svirt-admin says so with 3, not 1."""
    from cli_helpers import _run, _setpriv

    code = (
        f"import sys; sys.path.insert(0, {str(readable_src)!r}); "
        "import secured_virt.cli.admin_daemon as d; "
        f"d._socket = lambda args: {host.socket!r}; "
        "from secured_virt.cli.admin import main; sys.exit(main(sys.argv[1:]))"
    )
    from cli_helpers import PY

    r = _run([*_setpriv(GHOST_UID, GHOST_UID), PY, "-I", "-c", code, "status"])
    assert r.rc == DENIED and "has no passwd entry" in r.stderr, str(r)
