"""Issue 19: `make install` makes a host copy that stands on its own; tests never touch it.

What is run: the real ``make install`` of this tree into a scratch prefix (every directory of
the install moved under one private 0755 directory: PREFIX, BINDIR, SBINDIR, MANDIR, DOCDIR,
BASHCOMPDIR, SYSCONFDIR, UNITDIR), then the installed programs as installed: ``svirt-admin``
as root, ``svirtd`` daemonised the way the README says for hosts without systemd
(start-stop-daemon, pid file, log file), ``svirsh`` as the real user svt-alice (setpriv) talking
to it, PAM through the installed interpreter (pam_wrapper), a reinstall over an admin's edited
/etc files, and ``make uninstall``.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lxml import etree

REPO = Path(__file__).resolve().parent.parent.parent
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from conftest import run_as  # noqa: E402

from secured_virt.testing import pamwrap  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="installs root-owned files and runs other uids"),
]

DIRS = ("PREFIX", "BINDIR", "SBINDIR", "MANDIR", "DOCDIR", "BASHCOMPDIR", "SYSCONFDIR", "UNITDIR")
SUBDIR = {
    "PREFIX": "opt/secured-virt",
    "BINDIR": "usr/local/bin",
    "SBINDIR": "usr/local/sbin",
    "MANDIR": "usr/local/share/man",
    "DOCDIR": "usr/local/share/doc/secured-virt",
    "BASHCOMPDIR": "usr/local/share/bash-completion/completions",
    "SYSCONFDIR": "etc",
    "UNITDIR": "usr/local/lib/systemd/system",
}


class Install:
    def __init__(self, root: Path):
        self.root = root
        self.dirs = {k: root / SUBDIR[k] for k in DIRS}
        self.prefix = self.dirs["PREFIX"]
        self.etc = self.dirs["SYSCONFDIR"] / "secured-virt"

    def make(self, target: str) -> subprocess.CompletedProcess:
        args = [f"{k}={v}" for k, v in self.dirs.items()]
        return subprocess.run(
            ["make", "-s", "-C", str(REPO), target, *args],
            capture_output=True,
            text=True,
            timeout=900,
        )

    def program(self, name: str) -> str:
        d = self.dirs["SBINDIR"] if name == "svirtd" else self.dirs["BINDIR"]
        return str(d / name)


#: the network front-ends: program, unit and system user of one name each (issues 16, 17)
FRONTENDS = ("svirt-xenapi", "svirt-web")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="module")
def installed():
    root = Path(
        subprocess.check_output(["mktemp", "-d", "/tmp/svt-install.XXXXXX"], text=True).strip()
    )
    os.chmod(root, 0o755)
    inst = Install(root)
    inst.users_before = {u for u in FRONTENDS if _user_exists(u)}
    try:
        r = inst.make("install")
        assert r.returncode == 0, r.stdout + r.stderr
        inst.first_output = r.stdout
        yield inst
    finally:
        shutil.rmtree(root, ignore_errors=True)
        # install made the front-ends' users and uninstall keeps them (by design): the test
        # removes those it caused, so this machine is left as it was found
        for u in FRONTENDS:
            if u not in inst.users_before and _user_exists(u):
                subprocess.run(["/usr/sbin/userdel", "--", u], check=False)


# -- what is installed ---------------------------------------------------------------------------
def test_programs_run_the_installed_interpreter_isolated(installed):
    py = installed.prefix / "bin" / "python"
    for name in ("svirsh", "svirt-admin", "svirtd"):
        path = Path(installed.program(name))
        assert path.exists(), path
        target = Path(os.path.realpath(path))
        assert target.parent == installed.prefix / "bin"
        assert target.read_text().splitlines()[0] == f"#!{py} -I"
    r = subprocess.run([installed.program("svirsh"), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "secured-virt" in r.stdout, r.stderr


def test_nothing_installed_points_back_at_the_source_tree(installed):
    """A non-editable build: no .pth or finder naming this checkout, no source path in any
    file of the prefix, so changing or deleting the checkout (or `make test` in another clone)
    cannot change what the installed commands run."""
    site = next((installed.prefix / "lib").glob("python3*/site-packages"))
    assert not list(site.glob("__editable__*")), "an editable install"
    needle = str(REPO).encode()
    for dirpath, _dirs, files in os.walk(installed.prefix):
        for f in files:
            p = Path(dirpath, f)
            if p.is_symlink():
                continue
            assert needle not in p.read_bytes(), f"{p} names the source tree {REPO}"
    mod = subprocess.run(
        [
            str(installed.prefix / "bin" / "python"),
            "-I",
            "-c",
            "import secured_virt; print(secured_virt.__file__)",
        ],
        capture_output=True,
        text=True,
    )
    assert mod.stdout.strip().startswith(str(site)), mod


def test_byte_code_compiled_and_everything_world_readable_root_writable(installed):
    site = next((installed.prefix / "lib").glob("python3*/site-packages"))
    for pkg in ("secured_virt", "rbac", "policy"):
        for src in (site / pkg).rglob("*.py"):
            tag = sys.implementation.cache_tag
            pyc = src.parent / "__pycache__" / f"{src.stem}.{tag}.pyc"
            assert pyc.exists(), f"{src} has no byte-code"
    for dirpath, dirs, files in os.walk(installed.prefix):
        for name in [*dirs, *files]:
            p = Path(dirpath, name)
            st = p.lstat()
            if p.is_symlink():
                continue
            assert st.st_uid == 0, p
            assert not st.st_mode & 0o022, f"{p} is writable by others: {oct(st.st_mode)}"
            assert st.st_mode & 0o004, f"{p} is not world-readable"
            if p.is_dir():
                assert st.st_mode & 0o001, f"{p} is not world-searchable"


def test_man_pages_completion_docs_and_units(installed):
    mandir = installed.dirs["MANDIR"]
    for page in ("svirsh", "svirt-admin", "svirtd", *FRONTENDS, "svirt-xl-receive"):
        r = subprocess.run(
            ["man", "-w", page],
            capture_output=True,
            text=True,
            env={"MANPATH": str(mandir), "PATH": "/usr/bin:/bin"},
        )
        assert r.returncode == 0 and r.stdout.startswith(str(mandir)), (page, r.stderr)
    for prog in ("svirsh", "svirt-admin"):
        comp = installed.dirs["BASHCOMPDIR"] / prog
        assert "complete -F" in comp.read_text()
    docs = installed.dirs["DOCDIR"]
    units = installed.dirs["UNITDIR"]
    units_of = {"svirtd.service": "svirtd", "svirtd.socket": "svirtd"}
    units_of |= {f"{fe}.service": fe for fe in FRONTENDS}
    for unit, prog in units_of.items():
        text = (units / unit).read_text()
        for line in text.splitlines():
            if line.startswith("ExecStart="):
                exe = line.split("=", 1)[1].split()[0]
                assert exe == installed.program(prog) and os.access(exe, os.X_OK), line
            if line.startswith("Documentation="):
                for ref in line.split("=", 1)[1].split():
                    if ref.startswith("file://"):
                        assert Path(ref[len("file://") :]).is_file(), ref
                        assert Path(ref[len("file://") :]).parent == docs
                    else:
                        name = re.fullmatch(r"man:([\w-]+)\((\d)\)", ref)
                        assert name, ref
                        assert (mandir / f"man{name[2]}" / f"{name[1]}.{name[2]}").is_file(), ref
    # the README's own default paths agree with the Makefile's
    assert "ExecStart=/usr/local/sbin/svirtd" in (REPO / "etc/systemd/svirtd.service").read_text()


def test_sample_role_files_grant_nothing_to_real_accounts(installed):
    """The samples name only users that cannot exist: no passwd name has a ':'."""
    ua = etree.parse(str(installed.etc / "ua.xml"))
    users = [u.get("name") for u in ua.iter("User")]
    assert users, "the sample shows the format"
    for name in users:
        assert ":" in name, name
        with pytest.raises(KeyError):
            pwd.getpwnam(name)
    r = subprocess.run(
        [
            installed.program("svirt-admin"),
            "--config",
            str(installed.etc / "secured-virt.conf"),
            "validate",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


# -- running the installed programs ------------------------------------------------------------
def _host_config(inst: Install, **extra) -> Path:
    """A configuration for the installed programs whose every directory does not exist yet
    (svirtd creates them), on libvirt's test driver with the demo's VMs."""
    var = inst.root / "var"
    for d in (var, var / "run", var / "log", var / "lib"):  # as /run, /var/log, /var/lib on a host
        d.mkdir(mode=0o755, exist_ok=True)
        os.chmod(d, 0o755)
    node = inst.root / "node.xml"
    shutil.copy(REPO / "etc/demo/node.xml", node)
    ua = inst.etc / "ua-test.xml"
    ua.write_text(
        '<?xml version="1.0"?>\n<UserConfiguration>\n'
        '  <User name="svt-alice"><UserRole role="WebTeam"/></User>\n</UserConfiguration>\n'
    )
    pa = inst.etc / "pa-test.xml"
    shutil.copy(REPO / "etc/demo/pa.xml", pa)
    for p in (ua, pa):
        os.chmod(p, 0o644)
    settings = {
        "uri": f"test://{node}",
        "ua": ua,
        "pa": pa,
        "audit_log": var / "log/secured-virt/audit.log",
        "audit_syslog": "no",
        "socket": var / "run/secured-virt/svirtd.sock",
        "auth_dir": var / "run/secured-virt/ts",
        "acm_state_dir": var / "lib/secured-virt/acm",
        "label_store": var / "lib/secured-virt/resource-labels.xml",
        "save_dir": var / "lib/secured-virt/save",
        "rolefile_state_dir": var / "lib/secured-virt/rolefiles",
        **extra,
    }
    conf = inst.etc / "test.conf"
    conf.write_text("[secured-virt]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    os.chmod(conf, 0o644)
    return conf


def _wait_for(path: Path, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > end:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.1)


def test_svirtd_daemonised_without_systemd_as_the_readme_says(installed, test_users):
    """start-stop-daemon --background with a pid file and a log file (README, svirtd(8));
    svirtd creates its run, log and state directories; svirsh as svt-alice is served; one
    'stopped' line in the log after SIGTERM."""
    conf = _host_config(installed)
    var = installed.root / "var"
    pidfile = installed.root / "svirtd.pid"
    log = installed.root / "svirtd.log"
    r = subprocess.run(
        [
            "start-stop-daemon",
            "--start",
            "--background",
            "--make-pidfile",
            "--pidfile",
            str(pidfile),
            "--output",
            str(log),
            "--startas",
            installed.program("svirtd"),
            "--",
            "--config",
            str(conf),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    sock = var / "run/secured-virt/svirtd.sock"
    try:
        _wait_for(sock)
        alice = test_users["svt-alice"]
        svirsh = [installed.program("svirsh"), "--socket", str(sock)]
        res = run_as(alice, [*svirsh, "list", "--all", "--name"])
        assert res.returncode == 0, res.stderr
        assert set(res.stdout.split()) == {"alice-web", "alice-db"}
        res = run_as(alice, [*svirsh, "start", "alice-db"])
        assert res.returncode == 0 and "started" in res.stdout, res.stderr
        res = run_as(alice, [*svirsh, "destroy", "bob-build"])
        assert res.returncode == 3, res
        status = subprocess.run(
            [installed.program("svirt-admin"), "--config", str(conf), "status"],
            capture_output=True,
            text=True,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert (var / "log/secured-virt/audit.log").stat().st_size > 0
        for d, mode in (
            (var / "run/secured-virt", 0o755),
            (var / "log/secured-virt", None),
        ):
            st = d.stat()
            assert st.st_uid == 0 and not st.st_mode & 0o022, d
            if mode is not None:
                assert st.st_mode & 0o777 == mode, (d, oct(st.st_mode))
    finally:
        stop = subprocess.run(
            [
                "start-stop-daemon",
                "--stop",
                "--pidfile",
                str(pidfile),
                "--remove-pidfile",
                "--retry",
                "TERM/20/KILL/5",
            ],
            capture_output=True,
            text=True,
        )
    assert stop.returncode == 0, stop.stderr
    text = log.read_text()
    assert text.count("svirtd stopped") == 1, text
    assert not sock.exists()


def test_pam_through_the_installed_interpreter(installed, test_users, tmp_path):
    """The installed Python has python-pam (Debian's python3 does not): an operation that needs
    a password is checked by PAM in the installed svirtd, the password typed by the real user
    svt-alice into the installed svirsh (piped: no terminal)."""
    reason = pamwrap.unavailable_reason()
    if reason:
        pytest.skip(reason)
    pw_base = Path(
        subprocess.check_output(["mktemp", "-d", "/tmp/svt-pam.XXXXXX"], text=True).strip()
    )
    try:
        pw = pamwrap.make_pam_wrapper(pw_base, {"svt-alice": "right-horse"})
        conf = _host_config(installed, auth_operations="start", auth_timeout_minutes="0")
        sock = installed.root / "var/run/secured-virt/svirtd.sock"
        code = (
            pw.child_prelude()
            + "import sys\nfrom secured_virt.daemon.server import main\n"
            + "sys.exit(main(sys.argv[1:]))\n"
        )
        d = subprocess.Popen(
            [str(installed.prefix / "bin/python"), "-I", "-c", code, "--config", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "svirtd.log", "w"),  # noqa: SIM115
        )
        try:
            _wait_for(sock)
            alice = test_users["svt-alice"]
            svirsh = [installed.program("svirsh"), "--socket", str(sock)]
            res = run_as(alice, [*svirsh, "start", "alice-db"], input="wrong\nwrong\nwrong\n")
            assert res.returncode == 3, res
            assert "none was given" not in res.stderr, res.stderr
            assert "GetPassWarning" not in res.stderr and "getpass" not in res.stderr, res.stderr
            assert res.stderr.count("Sorry, try again.") == 2, res.stderr
            # one wrong password piped in: its failure is reported, not "none was given"
            res = run_as(alice, [*svirsh, "start", "alice-db"], input="wrong\n")
            assert res.returncode == 3, res
            assert "none was given" not in res.stderr, res.stderr
            assert "1 incorrect password attempt" in res.stderr, res.stderr
            res = run_as(alice, [*svirsh, "start", "alice-db"], input="right-horse\n")
            assert res.returncode == 0 and "started" in res.stdout, res.stdout + res.stderr
        finally:
            d.send_signal(signal.SIGTERM)
            d.wait(30)
    finally:
        shutil.rmtree(pw_base, ignore_errors=True)


# -- the network front-ends (issues 16, 17) --------------------------------------------------
def test_frontends_programs_units_docs_and_users(installed):
    """svirt-xenapi and svirt-web: linked programs running the installed Python isolated,
    units naming them where they were installed and running them as their own system user,
    their docs, and those users: system accounts, no login shell, no home, their own group."""
    py = installed.prefix / "bin" / "python"
    units, docs = installed.dirs["UNITDIR"], installed.dirs["DOCDIR"]
    for name in FRONTENDS:
        path = installed.dirs["BINDIR"] / name
        target = Path(os.path.realpath(path))
        assert target.parent == installed.prefix / "bin", path
        assert target.read_text().splitlines()[0] == f"#!{py} -I"
        r = subprocess.run([str(path), "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "--setup" in r.stdout, r.stderr
        text = (units / f"{name}.service").read_text()
        lines = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln and ln[0] != "#")
        assert lines["User"] == lines["Group"] == name
        for key in ("ExecStart", "ExecStartPre"):
            exe = lines[key].split()[0]
            assert exe == str(path) and os.access(exe, os.X_OK), (key, exe)
        refs = lines["Documentation"].split()  # man:PAGE(8) and the installed doc file
        assert f"man:{name}(8)" in refs, refs
        ref = next(r for r in refs if r.startswith("file://"))
        assert Path(ref[len("file://") :]).parent == docs, ref
        assert Path(ref[len("file://") :]).is_file(), ref
        assert (installed.prefix / "share/secured-virt/etc/systemd" / f"{name}.service").is_file()
        pw = pwd.getpwnam(name)
        assert pw.pw_uid < 1000 and pw.pw_shell == "/usr/sbin/nologin", pw
        assert not os.path.exists(pw.pw_dir), pw.pw_dir
        assert grp.getgrgid(pw.pw_gid).gr_name == name
        made = name not in installed.users_before
        said = f"created the system user {name}" if made else f"kept the user {name}"
        assert said in installed.first_output, installed.first_output
    assert (docs / "xenapi.md").is_file() and (docs / "web.md").is_file()


def test_installed_frontends_run_as_their_own_users(installed):
    """Each installed program, run as its own system user, makes its self-signed certificate
    (``--setup``, as the unit's ExecStartPre does): the installed venv has what it imports
    (aiohttp), the key is 0600 and the user's; as root it refuses to run (exit 2)."""
    state = installed.root / "var" / "lib"
    state.mkdir(parents=True, exist_ok=True)
    extra = {}
    for name in FRONTENDS:
        prefix = name.removeprefix("svirt-")
        d = state / name
        d.mkdir(mode=0o700, exist_ok=True)
        pw = pwd.getpwnam(name)
        os.chown(d, pw.pw_uid, pw.pw_gid)
        extra |= {prefix: "yes", f"{prefix}_cert": d / "cert.pem", f"{prefix}_key": d / "key.pem"}
    conf = _host_config(installed, **extra)
    for name in FRONTENDS:
        prog = str(installed.dirs["BINDIR"] / name)
        r = subprocess.run([prog, "--config", str(conf), "--setup"], capture_output=True, text=True)
        assert r.returncode == 2 and "must not run as root" in r.stderr, r.stderr
        r = run_as(pwd.getpwnam(name), [prog, "--config", str(conf), "--setup"])
        assert r.returncode == 0, r.stderr
        key = os.stat(state / name / "key.pem")
        assert key.st_uid == pwd.getpwnam(name).pw_uid and key.st_mode & 0o777 == 0o600


# -- reinstall, test venv, uninstall ---------------------------------------------------------
def test_reinstall_keeps_the_admins_etc_files(installed):
    ua = installed.etc / "ua.xml"
    pam = installed.dirs["SYSCONFDIR"] / "pam.d" / "secured-virt"
    mine = ua.read_text().replace("example:alice", "example:someone-else")
    ua.write_text(mine)
    pam.write_text("# the admin's own stack\n")
    site = next((installed.prefix / "lib").glob("python3*/site-packages"))
    damaged = site / "secured_virt" / "requests.py"
    damaged.write_text("broken = True\n")
    r = installed.make("install")
    assert r.returncode == 0, r.stdout + r.stderr
    assert ua.read_text() == mine
    assert pam.read_text() == "# the admin's own stack\n"
    assert f"kept {ua}" in r.stdout
    assert all(f"kept the user {u} (it exists)" in r.stdout for u in FRONTENDS), r.stdout
    # the package itself was replaced (same version number: a forced reinstall)
    assert damaged.read_bytes() == (REPO / "secured_virt/requests.py").read_bytes()
    shipped = installed.prefix / "share/secured-virt/etc/ua.xml"
    assert shipped.read_bytes() == (REPO / "etc/ua.xml").read_bytes()


def _make_print_venv(directory: Path) -> str:
    return subprocess.run(
        ["make", "-s", "-C", str(directory), "print-venv"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_the_test_venv_is_per_checkout_and_never_the_install(installed, tmp_path):
    """`make test` builds an editable venv of *its* checkout; two clones get two venvs, neither
    inside the install prefix, and `make install` does not use either."""
    other = tmp_path / "clone"
    other.mkdir()
    shutil.copy(REPO / "Makefile", other / "Makefile")
    mine, theirs = _make_print_venv(REPO), _make_print_venv(other)
    assert mine != theirs
    for v in (mine, theirs):
        assert not v.startswith("/opt/secured-virt"), v
        assert not v.startswith(str(installed.prefix)), v
    args = [f"{k}={v}" for k, v in installed.dirs.items()]
    dry = subprocess.run(
        ["make", "-n", "-C", str(REPO), "install", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert mine not in dry and "pip install -q -e" not in dry
    assert Path(sys.executable).parent.parent != installed.prefix


def test_uninstall_removes_what_it_installed_and_keeps_etc(installed):
    r = installed.make("uninstall")
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("svirsh", "svirt-admin", "svirtd", *FRONTENDS):
        assert not os.path.lexists(installed.program(name))
        assert not (installed.dirs["UNITDIR"] / f"{name}.service").exists()
    assert not installed.prefix.exists()
    assert not (installed.dirs["MANDIR"] / "man1/svirsh.1").exists()
    assert not list((installed.dirs["MANDIR"] / "man8").glob("*.8")), "a page stayed"
    assert not (installed.dirs["UNITDIR"] / "svirtd.service").exists()
    assert (installed.etc / "ua.xml").exists() and (installed.etc / "secured-virt.conf").exists()
    assert "Kept (yours)" in r.stdout
    # the front-ends' users stay: their uids own /var/lib/svirt-* (the TLS keys), which stay
    assert all(_user_exists(u) for u in FRONTENDS)
    assert "Kept too: the system users svirt-xenapi svirt-web" in r.stdout
