"""A real LDAP directory for tests: Debian's slapd and nslcd, seen through NSS in a private
mount namespace, without touching the host's NSS configuration.

Why: UA can give a role to a Unix group resolved through NSS (rbac/groups.py).  Local groups
prove the mechanism; a directory proves what the issue asks for — a user who is *not* in
/etc/passwd, a group that lives in LDAP, a membership changed with ``ldapmodify`` and seen by a
running svirtd.  Installing Debian's libnss-ldapd would rewrite /etc/nsswitch.conf and start
daemons on the host, so the Makefile only *unpacks* slapd, ldap-utils, nslcd and libnss-ldapd
into :data:`LDAP_ROOT` (``apt-get download`` + ``dpkg-deb -x``; their maintainer scripts never
run) and installs their libraries through apt.

What :class:`LdapDirectory` builds (everything under one temporary directory, all of it torn
down by :meth:`LdapDirectory.stop`, on failure too):

* **slapd** as root on an ldapi socket in the temporary directory, its cn=config made with
  ``slapadd -n0`` (modules and schemas from :data:`LDAP_ROOT`), one mdb database holding
  ``ou=people`` and ``ou=groups`` (posixAccount / posixGroup with memberUid, the RFC 2307
  layout nslcd reads by default).  Entries are added and changed with ldapadd/ldapmodify.
* **a private mount namespace** held by a small process (``unshare --mount``, propagation
  private, so nothing mounted in it is seen outside): a private ``/etc/nsswitch.conf``
  (``passwd: files ldap``, ``group: files ldap``; the host's other lines), a private
  ``/etc/ld.so.cache`` that also lists the unpacked ``libnss_ldap.so.2`` (so every process
  in the namespace, whatever its environment, loads it), and a private ``/run`` whose
  entries are symlinks to the host's ``/run`` except ``nslcd`` (our nslcd's socket) and
  ``nscd`` (a host nscd would answer from the host's configuration).
* **nslcd** inside that namespace, in a nested namespace of its own whose ``/etc`` is a
  directory of symlinks to the host's ``/etc`` plus its ``nslcd.conf`` (nslcd reads only the
  compiled-in /etc/nslcd.conf, and no such file may be created on the host).

Teardown: :meth:`LdapDirectory.stop` (also when start-up fails half way) closes the holder's
stdin, on which the holder stops nslcd and exits, taking the namespace with it; then slapd
stops and the directory is removed.  If the test process is killed instead, the kernel sends
slapd and the holder SIGTERM (``PR_SET_PDEATHSIG``) and the holder still stops nslcd.

Code under test runs in the namespace with :meth:`LdapDirectory.run` / :meth:`popen`
(``nsenter --mount``), optionally as a directory uid through ``setpriv``.  The host's /etc
is the live one there (new local users are seen), only the two files above are replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

#: where the Makefile unpacks Debian's slapd, ldap-utils, nslcd and libnss-ldapd
LDAP_ROOT = Path(os.environ.get("SVT_LDAP_ROOT", "/var/cache/secured-virt-test/debian-ldap"))
#: the packages unpacked there (the Makefile's LDAP_DEBS)
DEBS = ("slapd", "ldap-utils", "nslcd", "libnss-ldapd")

UNSHARE = "/usr/bin/unshare"
NSENTER = "/usr/bin/nsenter"
SETPRIV = "/usr/bin/setpriv"
MOUNT = "/usr/bin/mount"
LDCONFIG = "/usr/sbin/ldconfig"

BASE_DN = "dc=svt,dc=test"
ROOT_DN = f"cn=admin,{BASE_DN}"
#: the root DN's password: slapd listens only on a socket in a private 0755 directory of root
ROOT_PW = "svt-ldap-test"
#: the group that proves the whole chain works before start() returns
PROBE_GROUP = "svtldapprobe"
PROBE_GID = 70999


class LdapUnavailable(RuntimeError):
    """The directory cannot run on this machine; the message says exactly why."""


def _paths(root: Path) -> dict[str, Path]:
    return {
        "slapd": root / "usr/sbin/slapd",
        "slapadd": root / "usr/sbin/slapadd",
        "ldapadd": root / "usr/bin/ldapadd",
        "ldapmodify": root / "usr/bin/ldapmodify",
        "nslcd": root / "usr/sbin/nslcd",
        "nss": root / "lib/x86_64-linux-gnu/libnss_ldap.so.2",
        "modules": root / "usr/lib/ldap",
        "schema": root / "etc/ldap/schema",
        "libs": root / "usr/lib/x86_64-linux-gnu",
    }


def unavailable_reason(root: Path = LDAP_ROOT) -> str | None:
    """Why the directory cannot run here (None when it can): for pytest.skip messages."""
    if os.geteuid() != 0:
        return "slapd, nslcd and mount namespaces need root"
    for name, path in _paths(root).items():
        if not path.exists():
            return (
                f"{path} is missing ({name}): `make apt` unpacks Debian's {', '.join(DEBS)} "
                f"into {root} (or set SVT_LDAP_ROOT)"
            )
    for tool in (UNSHARE, NSENTER, SETPRIV, MOUNT, LDCONFIG):
        if not os.access(tool, os.X_OK):
            return f"{tool} is missing (util-linux / libc-bin)"
    probe = subprocess.run(
        [UNSHARE, "--mount", "--propagation", "private", "/bin/true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"cannot create a mount namespace here: {probe.stderr.strip()}"
    return None


def _ldif_quote(value: str) -> str:
    if not value.isascii() or any(c in value for c in "\n\r\0"):
        raise ValueError(f"unsupported LDIF value {value!r}")
    return value


class LdapDirectory:
    """slapd + nslcd + a private mount namespace; see the module docstring.

    Use as a context manager; :meth:`stop` also runs when start-up fails half way."""

    def __init__(self, root: Path = LDAP_ROOT, *, base_dn: str = BASE_DN):
        self.root = Path(root)
        self.base_dn = base_dn
        self.bin = _paths(self.root)
        self.dir: Path | None = None
        self.slapd: subprocess.Popen | None = None
        self.holder: subprocess.Popen | None = None
        self.nslcd_pid: int | None = None
        self._logs: list = []

    # -- life cycle ------------------------------------------------------------------------
    def __enter__(self) -> LdapDirectory:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> LdapDirectory:
        why = unavailable_reason(self.root)
        if why:
            raise LdapUnavailable(why)
        self.dir = Path(tempfile.mkdtemp(prefix="svt-ldap-", dir="/tmp"))
        self.dir.chmod(0o755)  # directory uids reach /run/nslcd/socket through it
        self.uri = "ldapi://" + quote(str(self.dir / "ldapi"), safe="")
        self._start_slapd()
        self._start_namespace()
        self._wait_for_probe()
        return self

    def stop(self) -> None:
        """Stop nslcd, the namespace holder and slapd (each only if started), remove the files."""
        if self.holder is not None:
            with contextlib.suppress(OSError):
                self.holder.stdin.close()  # the holder stops nslcd, exits; the namespace goes
            _terminate(self.holder, first=None)
            self.holder = None
        if self.nslcd_pid is not None:  # only if the holder could not stop it (it was killed)
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{self.nslcd_pid}/exe") == str(self.bin["nslcd"]):
                    os.kill(self.nslcd_pid, signal.SIGKILL)
            self.nslcd_pid = None
        if self.slapd is not None:
            _terminate(self.slapd)
            self.slapd = None
        for fh in self._logs:
            fh.close()
        self._logs = []
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def log(self, name: str) -> str:
        """The output of ``slapd``, ``nslcd`` or ``holder`` so far (for failure messages)."""
        try:
            return (self.dir / f"{name}.log").read_text(errors="replace")
        except (OSError, TypeError):
            return ""

    def _logfile(self, name: str):
        fh = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(fh)
        return fh

    # -- slapd -----------------------------------------------------------------------------
    def _start_slapd(self) -> None:
        d = self.dir
        conf, db = d / "slapd.d", d / "db"
        conf.mkdir(mode=0o700)
        db.mkdir(mode=0o700)
        schema = self.bin["schema"]
        config = f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {d}/slapd.pid
olcArgsFile: {d}/slapd.args

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {self.bin["modules"]}
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file://{schema}/core.ldif

include: file://{schema}/cosine.ldif

include: file://{schema}/nis.ldif

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: 5000

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {db}
olcSuffix: {self.base_dn}
olcRootDN: {ROOT_DN}
olcRootPW: {ROOT_PW}
olcDbMaxSize: 67108864
olcDbIndex: objectClass eq
olcDbIndex: uid,cn,memberUid eq
olcAccess: {{0}}to * by * read
"""
        dc = self.base_dn.split(",")[0].split("=", 1)[1]
        data = f"""dn: {self.base_dn}
objectClass: dcObject
objectClass: organization
o: secured-virt tests
dc: {dc}

dn: ou=people,{self.base_dn}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{self.base_dn}
objectClass: organizationalUnit
ou: groups

{self._group_ldif(PROBE_GROUP, PROBE_GID, ())}
"""
        (d / "config.ldif").write_text(config)
        (d / "data.ldif").write_text(data)
        env = self._slap_env()
        slapadd = [str(self.bin["slapadd"]), "-F", str(conf)]
        for argv in (
            [*slapadd, "-n", "0", "-l", str(d / "config.ldif")],
            [*slapadd, "-b", self.base_dn, "-l", str(d / "data.ldif")],
        ):
            r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
        self._spawn_slapd()

    def restart_slapd(self) -> None:
        """Start slapd again after a test stopped it (the directory-down case)."""
        if self.slapd is not None and self.slapd.poll() is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "ldapi").unlink()
        self._spawn_slapd()

    def _spawn_slapd(self) -> None:
        d = self.dir
        # -d 0: in the foreground (our child, stopped by pid), no debug output
        self.slapd = subprocess.Popen(
            [str(self.bin["slapd"]), "-F", str(d / "slapd.d"), "-h", self.uri, "-d", "0"],
            stdin=subprocess.DEVNULL,
            stdout=self._logfile("slapd"),
            stderr=subprocess.STDOUT,
            env=self._slap_env(),
            cwd="/",
            preexec_fn=_die_with_parent,
        )
        self._wait(lambda: (d / "ldapi").exists(), "slapd's ldapi socket", self.slapd, "slapd")

    def _slap_env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "LD_LIBRARY_PATH": str(self.bin["libs"]),  # libslapi, unpacked with slapd
        }

    # -- the namespace -----------------------------------------------------------------------
    def _start_namespace(self) -> None:
        d = self.dir
        host = Path("/etc/nsswitch.conf").read_text()
        lines = [
            ln
            for ln in host.splitlines()
            if ln.split(":", 1)[0].strip() not in ("passwd", "group", "shadow", "gshadow")
        ]
        (d / "nsswitch.conf").write_text(
            "\n".join(
                [
                    "# secured-virt tests: a private nsswitch.conf (secured_virt.testing.ldapdir)",
                    "passwd: files ldap",
                    "group: files ldap",
                    "shadow: files",
                    "gshadow: files",
                    *lines,
                ]
            )
            + "\n"
        )
        (d / "ld.so.conf").write_text(f"{self.bin['nss'].parent}\ninclude /etc/ld.so.conf\n")
        run = d / "run"
        run.mkdir(mode=0o755)
        (run / "nslcd").mkdir(mode=0o755)
        # nslcd creates its socket after dropping to its uid (the package's dir is nslcd's)
        nobody = pwd.getpwnam("nobody")
        os.chown(run / "nslcd", nobody.pw_uid, nobody.pw_gid)
        for sub in ("hostrun", "nslcd-etc", "hostetc"):
            (d / sub).mkdir(mode=0o755)
        (d / "nslcd.conf").write_text(
            f"uid nobody\ngid nogroup\nuri {self.uri}\nbase {self.base_dn}\n"
        )
        spec = {"dir": str(d), "nslcd": str(self.bin["nslcd"]), "python": sys.executable}
        (d / "spec.json").write_text(json.dumps(spec))
        # the holder starts nslcd in the namespace and stops it when its stdin closes: at
        # stop(), or when this process dies (then the kernel's SIGTERM too: PDEATHSIG)
        self.holder = subprocess.Popen(
            [
                UNSHARE,
                "--mount",
                "--propagation",
                "private",
                "--",
                sys.executable,
                "-I",
                __file__,
                "hold",
                str(d / "spec.json"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._logfile("holder"),
            env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"},
            cwd="/",
            preexec_fn=_die_with_parent,
        )
        line = self.holder.stdout.readline().decode(errors="replace").split()
        if line[:1] != ["ready"]:
            self.holder.wait(10)
            raise RuntimeError(
                f"the namespace holder failed ({self.holder.returncode}): {' '.join(line)}\n"
                f"{self.log('holder')}\nnslcd:\n{self.log('nslcd')}"
            )
        self.nslcd_pid = int(line[1])
        self.ns = f"/proc/{self.holder.pid}/ns/mnt"

    def _wait_for_probe(self) -> None:
        def seen() -> bool:
            r = self.run(["/usr/bin/getent", "group", PROBE_GROUP])
            return r.returncode == 0 and r.stdout.startswith(f"{PROBE_GROUP}:")

        self._wait(seen, f"group {PROBE_GROUP} through NSS in the namespace", self.holder, "nslcd")

    def _wait(self, cond, what: str, proc: subprocess.Popen, log: str, timeout=30.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if proc.poll() is not None:
                raise RuntimeError(f"{log} exited with {proc.returncode}:\n{self.log(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} within {timeout:.0f}s:\n{self.log(log)}")
            time.sleep(0.05)

    # -- running code in the namespace ---------------------------------------------------------
    def argv(self, argv: list[str], user: pwd.struct_passwd | tuple[int, int] | None = None):
        """``argv`` run in the namespace, as ``user`` (uid, gid; no supplementary groups)."""
        prefix = [NSENTER, f"--mount={self.ns}", "--"]
        if user is not None:
            uid, gid = (user.pw_uid, user.pw_gid) if hasattr(user, "pw_uid") else user
            prefix += [SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
        return prefix + list(argv)

    def run(self, argv, *, user=None, env=None, input=None, timeout=60.0):
        """Run in the namespace and wait; text output captured."""
        base = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        base.update(env or {})
        return subprocess.run(
            self.argv(argv, user),
            env=base,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
        )

    def popen(self, argv, *, user=None, **kw) -> subprocess.Popen:
        """Start in the namespace (the caller stops it; nsenter execs, so its pid is argv's)."""
        kw.setdefault("cwd", "/")
        return subprocess.Popen(self.argv(argv, user), **kw)

    # -- directory content ---------------------------------------------------------------------
    def _group_ldif(self, name: str, gid: int, members) -> str:
        out = [
            f"dn: cn={_ldif_quote(name)},ou=groups,{self.base_dn}",
            "objectClass: posixGroup",
            f"cn: {name}",
            f"gidNumber: {int(gid)}",
        ]
        out += [f"memberUid: {_ldif_quote(m)}" for m in members]
        return "\n".join(out) + "\n"

    def ldap(self, tool: str, ldif: str, ok=()) -> None:
        """Feed ``ldif`` to ldapadd or ldapmodify as the root DN; raise with its words on error
        (exit codes in ``ok`` aside: 16 is LDAP's noSuchAttribute)."""
        argv = [str(self.bin[tool]), "-x", "-H", self.uri, "-D", ROOT_DN, "-w", ROOT_PW]
        r = subprocess.run(
            argv, input=ldif, capture_output=True, text=True, env=self._slap_env(), timeout=60
        )
        if r.returncode != 0 and r.returncode not in ok:
            raise RuntimeError(f"{tool} failed ({r.returncode}): {r.stderr.strip()}\n{ldif}")

    def add_user(self, name: str, uid: int, gid: int) -> None:
        """A posixAccount ``uid=NAME,ou=people`` (no password: it never logs in)."""
        self.ldap(
            "ldapadd",
            f"dn: uid={_ldif_quote(name)},ou=people,{self.base_dn}\n"
            "objectClass: account\nobjectClass: posixAccount\n"
            f"uid: {name}\ncn: {name}\nuidNumber: {int(uid)}\ngidNumber: {int(gid)}\n"
            "homeDirectory: /nonexistent\nloginShell: /usr/sbin/nologin\n",
        )

    def add_group(self, name: str, gid: int, members=()) -> None:
        """A posixGroup ``cn=NAME,ou=groups`` with ``memberUid`` values."""
        self.ldap("ldapadd", self._group_ldif(name, gid, members))

    def add_member(self, group: str, user: str) -> None:
        self._modify_member(group, user, "add")

    def remove_member(self, group: str, user: str, *, missing_ok: bool = False) -> None:
        """``missing_ok``: a user who is not a member is no error (clean-up after a failure)."""
        self._modify_member(group, user, "delete", ok=(16,) if missing_ok else ())

    def _modify_member(self, group: str, user: str, how: str, ok=()) -> None:
        self.ldap(
            "ldapmodify",
            f"dn: cn={_ldif_quote(group)},ou=groups,{self.base_dn}\nchangetype: modify\n"
            f"{how}: memberUid\nmemberUid: {_ldif_quote(user)}\n",
            ok=ok,
        )


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies (prctl PR_SET_PDEATHSIG),
    so a killed test run leaves no slapd and no namespace holder behind."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # 1: PR_SET_PDEATHSIG


def _terminate(proc: subprocess.Popen, first: int | None = signal.SIGTERM) -> None:
    if proc.poll() is None and first is not None:
        with contextlib.suppress(OSError):
            proc.send_signal(first)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait(10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def unused_ids(count: int, start: int = 71000) -> list[int]:
    """``count`` numbers usable as both uid and gid: neither in /etc/passwd nor /etc/group."""
    import grp

    out, n = [], start
    while len(out) < count:
        try:
            pwd.getpwuid(n)
        except KeyError:
            try:
                grp.getgrgid(n)
            except KeyError:
                out.append(n)
        n += 1
    return out


# -- the processes inside the namespace (run as a script: ``python -I ldapdir.py ...``) ------
def _mount(*args: str) -> None:
    subprocess.run([MOUNT, *args], check=True, capture_output=True, timeout=30)


def _symlink_dir(target_dir: Path, link_dir: Path, skip: tuple[str, ...]) -> None:
    """``link_dir``: one symlink per entry of ``target_dir`` except ``skip``."""
    for name in os.listdir(target_dir):
        if name not in skip and not (link_dir / name).exists():
            os.symlink(target_dir / name, link_dir / name)


def _hold(spec_path: str) -> int:
    """In a fresh mount namespace (unshare, propagation private): mount, start nslcd, say
    ``ready PID``, and wait; at EOF on stdin (or SIGTERM) stop nslcd and exit."""
    spec = json.loads(Path(spec_path).read_text())
    d = Path(spec["dir"])
    # ld.so.cache listing libnss_ldap's directory; ldconfig's aux cache kept off the host's
    aux = Path("/var/cache/ldconfig")
    if aux.is_dir():
        _mount("-t", "tmpfs", "-o", "mode=0700", "svt-ldconfig", str(aux))
    subprocess.run(
        [LDCONFIG, "-X", "-C", str(d / "ld.so.cache"), "-f", str(d / "ld.so.conf")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    os.chmod(d / "ld.so.cache", 0o644)
    _mount("--bind", str(d / "ld.so.cache"), "/etc/ld.so.cache")
    _mount("--bind", str(d / "nsswitch.conf"), "/etc/nsswitch.conf")
    # /run: the host's entries as symlinks (sockets keep working), our nslcd/, no nscd
    _mount("--rbind", "/run", str(d / "hostrun"))
    _symlink_dir(d / "hostrun", d / "run", skip=("nslcd", "nscd"))
    _mount("--bind", str(d / "run"), "/run")
    with open(d / "nslcd.log", "ab") as log:
        nslcd = subprocess.Popen(
            [
                UNSHARE,
                "--mount",
                "--propagation",
                "private",
                "--",
                spec["python"],
                "-I",
                __file__,
                "nslcd",
                spec_path,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
        )
    signal.signal(signal.SIGTERM, _exit_on_signal)  # SystemExit: the finally stops nslcd
    try:
        deadline = time.monotonic() + 30
        while not (d / "run" / "nslcd" / "socket").exists():
            if nslcd.poll() is not None or time.monotonic() > deadline:
                sys.stdout.write(f"failed: nslcd (exit status {nslcd.poll()}) made no socket\n")
                return 1
            time.sleep(0.05)
        sys.stdout.write(f"ready {nslcd.pid}\n")
        sys.stdout.flush()
        with contextlib.suppress(OSError, ValueError):
            sys.stdin.read()  # until the test closes our stdin (or dies)
        return 0
    finally:
        _terminate(nslcd)


def _exit_on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def _nslcd(spec_path: str) -> None:
    """In a namespace nested in the holder's: /etc with our nslcd.conf, then exec nslcd."""
    spec = json.loads(Path(spec_path).read_text())
    d, nslcd = Path(spec["dir"]), spec["nslcd"]
    etc = d / "nslcd-etc"
    _mount("--rbind", "/etc", str(d / "hostetc"))
    shutil.copy(d / "nslcd.conf", etc / "nslcd.conf")
    os.chmod(etc / "nslcd.conf", 0o600)
    _symlink_dir(d / "hostetc", etc, skip=("nslcd.conf",))
    _mount("--bind", str(etc), "/etc")
    # -d: in the foreground, its debug lines in nslcd.log for a failing test's message
    os.execv(nslcd, [nslcd, "-d"])  # noqa: S606 - an absolute path, argv list


if __name__ == "__main__":
    if sys.argv[1:2] == ["hold"]:
        sys.exit(_hold(sys.argv[2]))
    if sys.argv[1:2] == ["nslcd"]:
        _nslcd(sys.argv[2])
    sys.exit(f"usage: {sys.argv[0]} hold SPEC | nslcd SPEC")
