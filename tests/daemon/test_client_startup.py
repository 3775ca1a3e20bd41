"""svirsh as a user starts it: the launcher loads no hypervisor or XML code, root's runs
leave no byte-code that other users cannot read, and svirsh ends without losing output
(issue 18).

Both were measured costs: the bin/ launcher imported libvirt and lxml only to check they
exist (~40 ms of every client), and root's runs, under the umask 077 set at start-up, wrote
0600 .pyc files in 0700 __pycache__ directories, so every other user recompiled those
modules on each start.  Timing is bench/bench_client.py's job; these tests check the causes.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from svtd_helpers import REPO, private_dir, running_svirtd

from secured_virt.cli.bytecode import CLIENT_PATH

pytestmark = pytest.mark.integration

HEAVY = ("libvirt", "libvirtmod", "lxml", "rbac", "policy")


@pytest.fixture
def env():
    with running_svirtd() as e:
        yield e


@pytest.fixture
def fresh_tree():
    """A root-owned copy of the tree with no byte-code at all, as after an install."""
    base = private_dir("svt-fresh-")
    for pkg in ("rbac", "policy", "secured_virt", "bin"):
        shutil.copytree(REPO / pkg, base / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for root, _dirs, files in os.walk(base):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o755 if root.endswith("/bin") else 0o644)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def imported_modules(importtime_stderr: str) -> set[str]:
    """Module names from ``python -X importtime`` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_launcher_through_svirtd_imports_no_hypervisor_or_xml_code(
    env, test_users, fresh_tree, as_user
):
    alice = test_users["svt-alice"]
    launcher = fresh_tree / "bin" / "svirsh"
    interpreter, *flags = launcher.read_text().splitlines()[0][2:].split()  # as the kernel runs it
    r = as_user(
        alice,
        [
            interpreter,
            *flags,
            "-X",
            "importtime",
            str(launcher),
            "--socket",
            env.socket,
            "list",
            "--all",
        ],
    )
    assert r.returncode == 0, r.stderr
    assert "alice-web" in r.stdout  # the real svirtd answered with alice's VMs
    mods = imported_modules(r.stderr)
    assert "secured_virt.client" in mods
    heavy = sorted(m for m in mods if m.split(".")[0] in HEAVY)
    assert heavy == [], f"the client path imported {heavy}"
    # root's runs keep exactly these modules' caches fresh for users (cli/bytecode.py)
    ours = {m for m in mods if m.split(".")[0] == "secured_virt"}
    listed = {
        p.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for p in CLIENT_PATH
    }
    assert ours == listed, "update secured_virt.cli.bytecode.CLIENT_PATH"


def _private_bytecode(tree: Path) -> list[str]:
    bad = []
    for root, dirs, files in os.walk(tree):
        for d in dirs:
            p = os.path.join(root, d)
            if d == "__pycache__" and stat.S_IMODE(os.stat(p).st_mode) & 0o005 != 0o005:
                bad.append(p)
        for f in files:
            p = os.path.join(root, f)
            if f.endswith(".pyc") and not os.stat(p).st_mode & 0o004:
                bad.append(p)
    return sorted(bad)


def test_roots_runs_leave_no_bytecode_other_users_cannot_read(env, test_users, fresh_tree, as_user):
    """Root runs svirsh (direct mode, then through svirtd) from a tree without byte-code;
    then a user runs it: every cache root left is readable by that user."""
    for argv in (
        ["--config", env.config, "list", "--all"],  # direct: rbac, policy, libvirt, service
        ["--daemon", "--socket", env.socket, "list", "--all"],
    ):
        r = subprocess.run(  # the launcher itself: its #! line decides the interpreter's flags
            [str(fresh_tree / "bin" / "svirsh"), *map(str, argv)],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin"},
            cwd="/",
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        assert "alice-web" in r.stdout  # direct mode found libvirt and lxml (site ran for it)
    assert _private_bytecode(fresh_tree) == []
    # and root's runs did cache what they loaded after the hardening (the client, direct
    # mode's modules): a tree whose caches nobody refreshes recompiles on every start
    for lazily_loaded in (
        "secured_virt/client",
        "secured_virt/service/facade",
        "secured_virt/backends/libvirt_backend",
    ):
        pkg, mod = lazily_loaded.rsplit("/", 1)
        assert list((fresh_tree / pkg / "__pycache__").glob(f"{mod}.*.pyc")), lazily_loaded
    r = as_user(
        test_users["svt-alice"],
        [
            str(fresh_tree / "bin" / "svirsh"),
            "--socket",
            env.socket,
            "domstate",
            "alice-web",
        ],
    )
    assert r.returncode == 0, r.stderr


def test_quick_exit_keeps_status_and_every_byte_of_output(env, test_users, fresh_tree, as_user):
    """svirsh ends without the interpreter's teardown: what it printed and its exit status
    must still arrive (stdout to a pipe is block-buffered, so an unflushed end would lose
    the listing; a denial must still exit 3 with its reason on stderr)."""
    launcher = str(fresh_tree / "bin" / "svirsh")
    alice = test_users["svt-alice"]
    r = as_user(alice, [launcher, "--socket", env.socket, "list", "--all", "--json"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip().endswith("}") and "alice-web" in r.stdout
    r = as_user(alice, [launcher, "--socket", env.socket, "start", "bob-build"])
    assert r.returncode == 3
    assert "denied" in r.stderr and r.stderr.endswith("\n")


def _strict(umask=0o077):
    """preexec_fn: root's shell on a hardened host (umask 077)."""
    return lambda: os.umask(umask)


def _loaded_from_source(verbose_stderr: str, tree: Path) -> list[str]:
    """Modules of ``tree`` that ``python -v`` compiled instead of loading their cache."""
    return sorted(
        line.split("code object from ", 1)[1].strip("'")
        for line in verbose_stderr.splitlines()
        if line.startswith("# code object from ")
        and line.rstrip("'").endswith(".py")
        and str(tree) in line
    )


def test_roots_launcher_repairs_client_caches_that_other_root_processes_left_private(
    env, test_users, fresh_tree, as_user
):
    """A root process without the hardening (a root shell's umask 077, an in-process test,
    a daemon started another way) caches the client path 0600, and those caches stay until
    the source changes: every user's svirsh then compiled client.py and render.py on each
    start (bin/svirsh 0.9x virsh against 0.65x installed).  Root's next bin/svirsh run,
    itself under umask 077, must leave them readable, and a user's run then compiles
    nothing of the tree."""
    producer = (
        f"import sys; sys.path.insert(0, {str(fresh_tree)!r}); import secured_virt.client, "
        "secured_virt.cli.render, secured_virt.cli.svirsh"
    )
    subprocess.run(
        ["/usr/bin/python3", "-I", "-c", producer], check=True, preexec_fn=_strict(), cwd="/"
    )
    assert _private_bytecode(fresh_tree)  # the situation: caches only root can read
    r = subprocess.run(
        [str(fresh_tree / "bin" / "svirsh"), "--config", env.config, "domstate", "alice-web"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
        timeout=120,
        preexec_fn=_strict(),
    )
    assert r.returncode == 0, r.stderr
    assert _private_bytecode(fresh_tree) == []
    launcher = fresh_tree / "bin" / "svirsh"
    interpreter, *flags = launcher.read_text().splitlines()[0][2:].split()
    r = as_user(
        test_users["svt-alice"],
        [interpreter, *flags, "-v", str(launcher), "--socket", env.socket, "list", "--all"],
    )
    assert r.returncode == 0, r.stderr
    assert "alice-web" in r.stdout
    assert _loaded_from_source(r.stderr, fresh_tree) == []


def test_svirsh_main_in_process_caches_what_it_loads_readable(env, fresh_tree):
    """main() sets umask 077 itself (for callers that skip start_program: tests, embedding);
    the client and render it then loads must still be cached readable by others."""
    code = (
        f"import sys; sys.path.insert(0, {str(fresh_tree)!r})\n"
        "from secured_virt.cli.svirsh import main\n"
        f"sys.exit(main(['--daemon', '--socket', {env.socket!r}, 'list', '--all']))"
    )
    r = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", code], capture_output=True, text=True, cwd="/"
    )
    assert r.returncode == 0, r.stderr
    for mod in ("secured_virt/__pycache__/client", "secured_virt/cli/__pycache__/render"):
        (pyc,) = (fresh_tree / mod).parent.glob(Path(mod).name + ".*.pyc")
        assert pyc.stat().st_mode & 0o044 == 0o044, pyc
    assert _private_bytecode(fresh_tree) == []
