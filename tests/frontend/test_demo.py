"""`make demo` end to end: the narrated tour checks each step's exit code itself and fails
when anything behaves differently from what it narrates — and it leaves no trace on the host:
no account, group, file, socket or process of its own, whether it ends normally, is
interrupted (Ctrl-C, SIGTERM) at any point, or runs twice in a row.  An account of a demo name
that existed before is used and left alone."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from secured_virt import demo

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the demo runs svirsh as other users: needs root"),
]

DATABASES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")


def host_state() -> dict:
    """What the demo could leave behind: the account databases, its temporary directories,
    and any process still running from one of them."""
    state = {}
    for path in DATABASES:
        if os.path.exists(path):
            with open(path) as f:
                state[path] = sorted(f.read().splitlines())
    state["dirs"] = sorted(glob.glob("/tmp/svirt-demo.*"))
    procs = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "svirt-demo." in cmd:
                procs.append(cmd)
    state["processes"] = procs
    return state


def run_demo(**kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "secured_virt.demo"],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        **kw,
    )


def _ctrl_c_as_in_a_terminal() -> None:
    """In the demo's child before exec: SIGINT back to its default.  A terminal's foreground
    job has it so; a suite started in the background of a non-interactive shell (``make test
    &``, nohup) ignores SIGINT, the demo would inherit that, and Python leaves an ignored
    SIGINT ignored: the Ctrl-C these tests send would then not reach the tour."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_demo(marker: str, sig: int) -> tuple[int, str]:
    """Run the demo, and once ``marker`` appears in its output send ``sig`` to its whole
    process group (what a terminal's Ctrl-C does); return its exit code and output."""
    p = subprocess.Popen(
        [sys.executable, "-u", "-m", "secured_virt.demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )
    out = []
    try:
        for line in p.stdout:
            out.append(line)
            if marker in line:
                os.killpg(p.pid, sig)
                break
        out.append(p.stdout.read())
        rc = p.wait(60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    text = "".join(out)
    assert marker in text, f"the demo never reached {marker!r}:\n{text[-2000:]}"
    return rc, text


def test_demo_tour_runs_as_narrated_and_leaves_nothing():
    before = host_state()
    r = run_demo()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "End of the tour" in out
    assert "conflict set 'Competitors'" in out and "ssidref:        0x00030003" in out
    assert "chain intact" in out
    # the tour's people act through accounts no real person has
    assert "svdemo-alice$ svirsh list --all" in out
    assert "\nalice$" not in out
    # the Xen-API chapter: the real client, PAM in svirtd, the gate's refusal, logout
    assert "XenAPI.Failure: ['PERMISSION_DENIED'" in out and "'SESSION_INVALID'" in out
    assert "https://127.0.0.1:9368/" in out  # where the web console is, and how to log in
    assert host_state() == before
    # and a second run right after behaves the same and leaves the same nothing
    again = run_demo()
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "End of the tour" in again.stdout
    assert host_state() == before


@pytest.mark.parametrize(
    ("marker", "sig"),
    [
        ("(creating the demo account 'svdemo-bob'", signal.SIGINT),  # half-way through set-up
        ("svdemo-alice$ svirsh list --all", signal.SIGINT),  # svirtd up, tour running
        ("A third host runs a policy", signal.SIGTERM),  # three svirtds running
        ('login_with_password("svdemo-alice"', signal.SIGINT),  # svirt-xenapi up, a password set
    ],
)
def test_an_interrupted_demo_leaves_nothing(marker, sig):
    before = host_state()
    rc, out = interrupt_demo(marker, sig)
    assert rc == 130, out[-2000:]
    assert "interrupted; cleaning up" in out
    assert "End of the tour" not in out
    # processes take a moment to be reaped after the demo's own exit
    deadline = time.monotonic() + 10
    while host_state()["processes"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert host_state() == before


@pytest.fixture
def existing_demo_account():
    """An account that happens to bear a demo name before the demo runs."""
    name = demo.ACCOUNTS["bob"]
    subprocess.run(
        ["/usr/sbin/useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
    )
    try:
        yield name
    finally:
        subprocess.run(["/usr/sbin/userdel", name], check=False)


def test_an_account_that_existed_before_is_used_and_kept(existing_demo_account):
    import pwd

    uid = pwd.getpwnam(existing_demo_account).pw_uid
    before = host_state()
    r = run_demo()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"creating the demo account '{existing_demo_account}'" not in r.stdout
    assert pwd.getpwnam(existing_demo_account).pw_uid == uid
    assert host_state() == before
    rc, out = interrupt_demo("svdemo-alice$ svirsh list --all", signal.SIGINT)
    assert rc == 130, out[-2000:]
    assert pwd.getpwnam(existing_demo_account).pw_uid == uid


def test_demo_files_name_the_tour_people_demo_accounts(tmp_path):
    """The private copies the demo writes grant nothing to alice, bob or carol."""
    ua = demo.with_demo_accounts(demo.DEMO / "ua.xml").decode()
    node = demo.with_demo_accounts(demo.DEMO / "node.xml").decode()
    for person in ("alice", "bob", "carol", "hostManager"):
        assert f'name="{person}"' not in ua
        assert f">{person}</svirt:owner>" not in node
        assert demo.ACCOUNTS[person].startswith("svdemo-")
    assert 'name="svdemo-alice"' in ua and ">svdemo-alice</svirt:owner>" in node
