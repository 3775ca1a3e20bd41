"""`make demo`: a narrated tour of secured-virt on libvirt's test driver.

It sets up a private, throw-away host configuration (nothing under /etc is touched): copies of
etc/demo's UA/PA and test-driver node, a config, an audit log and a socket in a temp directory.
It starts svirtd (root, holding the one test-driver connection, so state lasts for the tour),
creates the demo's accounts if this machine lacks them, and runs the real ``svirsh`` as those
real uids with ``setpriv`` — svirtd learns who they are from the kernel.  Root's side uses
``svirt-admin``.

The tour's people are alice, bob and carol, but their accounts are ``svdemo-alice``,
``svdemo-bob`` and ``svdemo-carol``: names no real person on a host will have, so the demo can
never lend its roles to someone's real account (the private UA and node copies are rewritten to
those names).  The demo leaves no trace: when it ends — normally, on an error, on Ctrl-C or on
SIGTERM/SIGHUP — it stops every svirtd it started, deletes the accounts (and their groups) it
created and removes its temporary directory.  An account of a demo name that existed before is
used and left alone.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "etc" / "demo"
#: the tour's people -> their accounts on this host (a prefix no real person has)
ACCOUNTS = {
    "alice": "svdemo-alice",
    "bob": "svdemo-bob",
    "carol": "svdemo-carol",
    "hostManager": "svdemo-hostmgr",
}
#: the accounts the tour runs commands as (hostManager is only named in UA)
USERS = ("alice", "bob", "carol")
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def say(text: str) -> None:
    print(f"\n{BOLD}# {textwrap.fill(text, 94, subsequent_indent='# ')}{RESET}", flush=True)


class Tour:
    def __init__(self, base: Path, src: Path | None = None, policy_file: Path | None = None):
        self.base = base
        self.src = src or base / "src"
        self.conf = base / "secured-virt.conf"
        self.sock = base / "run" / "svirtd.sock"
        self.python = sys.executable
        self.daemon: subprocess.Popen | None = None
        self.policy_file = policy_file or DEMO / "acm-policy.xml"

    # -- set-up -------------------------------------------------------------------------------
    def setup(self) -> None:
        os.chmod(self.base, 0o755)  # noqa: S103 - the demo's users must read it
        for pkg in ("rbac", "policy", "secured_virt", "bin"):
            if not (self.src / pkg).exists():  # a second host shares the first one's copy
                shutil.copytree(
                    REPO / pkg, self.src / pkg, ignore=shutil.ignore_patterns("__pycache__")
                )
        etc = self.base / "etc"
        etc.mkdir()
        shutil.copy(DEMO / "pa.xml", etc / "pa.xml")
        for name in ("ua.xml", "node.xml"):
            (etc / name).write_bytes(with_demo_accounts(DEMO / name))
        (self.base / "log").mkdir(mode=0o700)
        (self.base / "run").mkdir(mode=0o755)
        self.conf.write_text(
            textwrap.dedent(f"""\
            [secured-virt]
            uri = test://{etc / "node.xml"}
            ua = {etc / "ua.xml"}
            pa = {etc / "pa.xml"}
            audit_log = {self.base / "log" / "audit.log"}
            audit_syslog = no
            socket = {self.sock}
            auth_dir = {self.base / "ts"}
            acm = yes
            acm_state_dir = {self.base / "acm"}
            label_store = {self.base / "resource-labels.xml"}
            save_dir = {self.base / "save"}
            realms = {etc / "realms.xml"}
            realm_state_dir = {self.base / "realm-state"}
            """)
        )
        for root, dirs, files in os.walk(self.base):
            for d in dirs:
                p = os.path.join(root, d)
                if p != str(self.base / "log"):
                    os.chmod(p, 0o755)  # noqa: S103
            for f in files:
                os.chmod(os.path.join(root, f), 0o755 if root.endswith("bin") else 0o644)

    # -- running things -----------------------------------------------------------------------
    def launcher(self, program: str) -> list[str]:
        """``program``'s bin/ launcher from the demo's root-owned copy of the tree: what a
        host's users run, so each program starts the way it would there."""
        return [self.python, "-I", str(self.src / "bin" / program)]

    def load_policy(self) -> None:
        """Install the host's sHype policy for boot, before svirtd starts (quietly)."""
        subprocess.run(
            [
                *self.launcher("svirt-admin"),
                "--config",
                str(self.conf),
                "policy",
                "load",
                str(self.policy_file),
                "--boot",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )

    def start_daemon(self) -> None:
        self.daemon = subprocess.Popen(
            [
                *self.launcher("svirtd"),
                "--config",
                str(self.conf),
                "--log-level",
                "warning",
            ],
            stdin=subprocess.DEVNULL,
        )
        for _ in range(100):
            if self.sock.exists():
                return
            time.sleep(0.05)
        raise SystemExit("demo: svirtd did not start")

    def stop(self) -> None:
        if self.daemon and self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()

    def svirsh(self, user: str | None, *args: str, host: str = "") -> int:
        who = (ACCOUNTS[user] if user else "root") + (f"@{host}" if host else "")
        shown = " ".join(args)
        print(f"{DIM}{who}${RESET} svirsh {shown}", flush=True)
        argv = [*self.launcher("svirsh"), "--socket", str(self.sock), *args]
        if user is None:
            argv.insert(3, "--daemon")
        else:
            argv = [*as_uid(pwd.getpwnam(ACCOUNTS[user])), *argv]
        rc = subprocess.run(
            argv,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            stdin=subprocess.DEVNULL,
            cwd="/",
        ).returncode
        return noted(rc)

    def admin(self, *args: str) -> int:
        print(f"{DIM}root${RESET} svirt-admin {' '.join(args)}", flush=True)
        argv = [*self.launcher("svirt-admin"), "--config", str(self.conf), *args]
        return noted(subprocess.run(argv, stdin=subprocess.DEVNULL).returncode)


def as_uid(pw) -> list[str]:
    """The argv prefix that runs a program as ``pw``'s real uid and gid, no other groups:
    svirtd learns who the caller is from the kernel, never from the command line."""
    return [
        "/usr/bin/setpriv",
        f"--reuid={pw.pw_uid}",
        f"--regid={pw.pw_gid}",
        "--clear-groups",
        "--",
    ]


def noted(rc: int) -> int:
    """``rc``, with a non-zero one shown under the program's output as a terminal would."""
    if rc:
        print(f"{DIM}(exit code {rc}){RESET}")
    return rc


def _expecter(problems: list[str]):
    """expect(rc, want, what): note a step whose exit code differs from the narration."""

    def expect(rc: int, want: int, what: str) -> None:
        if rc != want:
            problems.append(f"{what}: exit {rc}, expected {want}")

    return expect


def tour(t: Tour) -> list[str]:
    """The narrated steps; returns a list of surprises (empty when all went as expected)."""
    problems: list[str] = []
    expect = _expecter(problems)

    say(
        "Root delegated VM management by writing two files.  UA says alice is in WebTeam, bob "
        "in BuildTeam, carol is an Auditor; PA says what each role may do on which VMs."
    )
    expect(t.admin("review", "user", ACCOUNTS["alice"]), 0, "review alice")
    say(
        "alice asks for the list of VMs.  svirtd learns from the kernel (SO_PEERCRED) that "
        "she is alice, and shows only the VMs her roles let her see."
    )
    expect(t.svirsh("alice", "list", "--all"), 0, "alice list")
    say("bob sees only his build VM; carol, the auditor, sees all five.")
    expect(t.svirsh("bob", "list", "--all"), 0, "bob list")
    expect(t.svirsh("carol", "list", "--all"), 0, "carol list")
    say("alice starts her database VM — allowed by WebTeam, audited, then done by libvirt.")
    expect(t.svirsh("alice", "start", "alice-db"), 0, "alice start")
    expect(t.svirsh("alice", "dominfo", "alice-db"), 0, "alice dominfo")
    say(
        "alice tries to destroy bob's VM.  Refused before libvirt is asked (exit code 3), and "
        "the denial says who, what, where, and which check refused."
    )
    expect(t.svirsh("alice", "destroy", "bob-build"), 3, "alice destroy bob")
    say("Pretending to be bob does not help: --as is root's alone, and the attempt is audited.")
    expect(t.svirsh("alice", "--as", ACCOUNTS["bob"], "destroy", "bob-build"), 3, "alice --as bob")
    say("Root asks why alice was refused:")
    explain = ("check", ACCOUNTS["alice"], "destroy", "bob-build", "--explain")
    expect(t.admin(*explain), 3, "explain")
    say("carol may look but not touch:")
    expect(t.svirsh("carol", "suspend", "alice-web"), 3, "carol suspend")
    problems += acm_tour(t)
    problems += realm_tour(t)
    problems += xenapi_tour(t)
    say("Every decision above — allowed or denied — is one hash-chained audit record.")
    expect(t.admin("audit", "verify"), 0, "audit verify")
    t.admin("audit", "show", "--denied")
    say("svirtd's own view: uptime, the policies in force, and what it has decided.")
    expect(t.admin("status"), 0, "status")
    return problems


def acm_tour(t: Tour) -> list[str]:
    """The mandatory half: sHype/ACM labels, Chinese Wall, STE, labels across hosts."""
    problems: list[str] = []
    expect = _expecter(problems)

    img = "/var/lib/libvirt/images/{}.qcow2"
    say(
        "Now the mandatory policy.  This host runs the sHype/ACM policy demo.hosting: AliceCorp "
        "and BobCorp are competitors (Chinese Wall conflict set 'Competitors'), and each "
        "tenant's disks carry its STE type.  Roles cannot override it — not even root's."
    )
    expect(t.admin("policy", "show"), 0, "policy show")
    expect(t.admin("policy", "conflicts"), 0, "policy conflicts")
    say("Both tenants stop their VMs, and root labels the VMs and their disks.")
    expect(t.svirsh("alice", "destroy", "alice-web"), 0, "alice destroy alice-web")
    expect(t.svirsh("bob", "destroy", "bob-build"), 0, "bob destroy bob-build")
    for args in (
        ("setlabel", "alice-web", "dom_AliceCorp"),
        ("setlabel", "--resource", img.format("alice-web"), "res_AliceData"),
        ("setlabel", "bob-build", "dom_BobCorp"),
        ("setlabel", "--resource", img.format("bob-build"), "res_BobData"),
    ):
        expect(t.svirsh(None, *args), 0, " ".join(args))
    say(
        "bob starts his build VM.  Then alice starts her web VM — her role allows it, but the "
        "Chinese Wall does not: a BobCorp domain is running."
    )
    expect(t.svirsh("bob", "start", "bob-build"), 0, "bob start")
    expect(t.svirsh("alice", "start", "alice-web"), 3, "alice start (conflict)")
    expect(t.svirsh(None, "list", "--label"), 0, "list --label")
    say(
        "alice is told the conflict, not which VM holds the wall: bob's VM is not hers to see "
        "(the audit, and root, see it).  Root's dry-run shows every check a start would make, "
        "and which one fails (exit 3, as the start):"
    )
    expect(t.svirsh(None, "dry-run", "alice-web"), 3, "dry-run (FAILED)")
    say("When bob's VM stops, the wall comes down and alice's VM may run.")
    expect(t.svirsh("bob", "destroy", "bob-build"), 0, "bob destroy")
    expect(t.svirsh("alice", "start", "alice-web"), 0, "alice start")
    say(
        "A disk with the wrong label: alice-db is labelled AliceCorp, but one of its disks was "
        "labelled as BobCorp data.  Simple Type Enforcement refuses the start and says which "
        "disk shares no type with the VM."
    )
    expect(t.svirsh("alice", "destroy", "alice-db"), 0, "alice destroy alice-db")
    expect(t.svirsh(None, "setlabel", "alice-db", "dom_AliceCorp"), 0, "label alice-db")
    expect(
        t.svirsh(None, "setlabel", "--resource", img.format("alice-db"), "res_BobData"),
        0,
        "mislabel disk",
    )
    expect(t.svirsh("alice", "start", "alice-db"), 3, "alice start alice-db (STE)")
    say(
        "Labels travel by name.  alice's VM is saved here and restored on a second host whose "
        "policy has one more tenant, so every label has a different number there.  Same "
        "label, the right local ssidref."
    )
    image = t.base / "alice-web.save"
    expect(t.svirsh(None, "dominfo", "alice-web"), 0, "dominfo host1")
    expect(t.svirsh(None, "save", "alice-web", str(image)), 0, "save")
    os.chmod(image, 0o644)
    host2 = Tour(t.base / "host2", t.src, DEMO / "acm-policy-host2.xml")
    host3 = Tour(t.base / "host3", t.src)  # no policy loaded: it runs DEFAULT
    try:
        host2.base.mkdir()
        host2.setup()
        host2.load_policy()
        host2.start_daemon()
        expect(host2.svirsh(None, "destroy", "alice-web", host="host2"), 0, "host2 destroy")
        expect(
            host2.svirsh(
                None,
                "setlabel",
                "--resource",
                img.format("alice-web"),
                "res_AliceData",
                host="host2",
            ),
            0,
            "host2 label disk",
        )
        expect(host2.svirsh(None, "restore", str(image), host="host2"), 0, "host2 restore")
        expect(host2.svirsh(None, "dominfo", "alice-web", host="host2"), 0, "host2 dominfo")
        say(
            "A third host runs a policy of another name, DEFAULT.  Its security officer even "
            "adds a label called dom_AliceCorp to it with svirt-admin policy add-label (one "
            "all-or-nothing update, no XML written by hand).  Same label name, other policy: "
            "the label means nothing there, so the restore is refused before the VM runs."
        )
        host3.base.mkdir()
        host3.setup()
        host3.start_daemon()
        expect(
            host3.admin("policy", "add-label", "vm", "dom_AliceCorp", "--ste", "__UNLABELED__"),
            0,
            "host3 policy add-label",
        )
        expect(host3.admin("policy", "labels"), 0, "host3 policy labels")
        expect(host3.svirsh(None, "destroy", "alice-web", host="host3"), 0, "host3 destroy")
        expect(host3.svirsh(None, "restore", str(image), host="host3"), 3, "host3 restore")
    finally:
        host2.stop()
        host3.stop()
    return problems


#: the realms of the tenants chapter (names no real realm on a host will have: each gets a
#: system user svirt-r-<realm>, which the chapter removes again)
REALMS = {"acme": "svdemo-acme", "globex": "svdemo-globex"}


def admin_as(t: Tour, user: str, *args: str) -> int:
    """svirt-admin as one of the tour's people: through svirtd, no sudo (a realm admin)."""
    pw = pwd.getpwnam(ACCOUNTS[user])
    print(f"{DIM}{ACCOUNTS[user]}${RESET} svirt-admin {' '.join(args)}", flush=True)
    argv = [*as_uid(pw), *t.launcher("svirt-admin"), *args, "--socket", str(t.sock)]
    rc = subprocess.run(
        argv, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, stdin=subprocess.DEVNULL, cwd="/"
    ).returncode
    return noted(rc)


def realm_tour(t: Tour) -> list[str]:
    """Tenants (seed 002): two realms, a realm admin delegating inside hers, a cross-realm
    attempt refused, and each realm's sVirt confinement shown by dominfo.  The realm system
    users set-up creates are removed at the end of the chapter, whatever happens."""
    problems: list[str] = []
    expect = _expecter(problems)
    acme, globex = REALMS["acme"], REALMS["globex"]
    # svirt-admin realm setup's names (confinement.dac.realm_user_name; short names as is)
    users = {r: f"svirt-r-{r}" for r in REALMS.values()}
    existed = {u for u in users.values() if _user_exists(u)}
    try:
        say(
            "Tenants.  Two organisations share this host: root writes one realms file — realm "
            f"{acme} (its admin is alice; it claims the VMs acme-*) and realm {globex} (bob is "
            "its member; globex-*) — and sets each realm up: its own QEMU system user and its "
            "own MCS category."
        )
        realms = t.base / "etc" / "realms.xml"
        realms.write_text(
            "<Realms>\n"
            f'  <Realm name="{acme}"><Admin user="{ACCOUNTS["alice"]}"/>'
            '<VM pattern="acme-*"/></Realm>\n'
            f'  <Realm name="{globex}"><Member user="{ACCOUNTS["bob"]}"/>'
            '<VM pattern="globex-*"/></Realm>\n'
            "</Realms>\n"
        )
        os.chmod(realms, 0o644)
        expect(t.admin("reload"), 0, "reload with realms")
        for realm in (acme, globex):
            expect(t.admin("realm", "setup", realm), 0, f"realm setup {realm}")
        for vm in ("acme-shop", "globex-db"):
            xml = t.base / f"{vm}.xml"
            xml.write_text(
                f"<domain type='test'><name>{vm}</name><memory>65536</memory><vcpu>1</vcpu>"
                "<os><type>hvm</type></os></domain>"
            )
            os.chmod(xml, 0o644)
            expect(t.svirsh(None, "define", str(xml)), 0, f"define {vm}")
        expect(t.svirsh(None, "list", "--all", "--svirt"), 0, "list with realms")
        say(
            "alice administers her realm herself, through svirtd — no sudo, not root: she "
            "makes a realm role, adds carol to her realm and gives both of them roles there.  "
            "Each change shows who gains what, and is audited."
        )
        for args in (
            ("grant", acme, "operators", "start,destroy,dominfo,list,getlabel", "acme-shop"),
            ("assign", acme, "operators", "--user", ACCOUNTS["alice"]),
            ("add-member", acme, "--user", ACCOUNTS["carol"]),
            ("grant", acme, "viewers", "dominfo", "acme-shop"),
            ("assign", acme, "viewers", "--user", ACCOUNTS["carol"]),
        ):
            expect(admin_as(t, "alice", "realm", *args), 0, f"alice realm {args[0]}")
        expect(t.svirsh("alice", "start", "acme-shop"), 0, "alice start acme-shop")
        say(
            "dominfo shows the realm, the VM's sVirt category pair — one category is the "
            "realm's own — and the DAC label: the uid its QEMU runs as, the realm's user.  This "
            "tour runs on libvirt's test driver, which starts no QEMU, so the kernel enforces "
            "nothing here; on a QEMU host each realm's guests run under their realm's uid with "
            "their images 0600, and the kernel refuses a cross-realm open.  SELinux is not "
            "enabled on this host, and dominfo says so."
        )
        expect(t.svirsh("alice", "dominfo", "acme-shop"), 0, "alice dominfo acme-shop")
        expect(t.svirsh("carol", "dominfo", "acme-shop"), 0, "carol dominfo acme-shop")
        say(
            "Nothing crosses realms.  bob, of the other realm, cannot even look at alice's "
            "VM; alice cannot touch bob's realm; and only root moves a VM between realms."
        )
        expect(t.svirsh("bob", "dominfo", "acme-shop"), 3, "bob dominfo acme-shop")
        expect(
            admin_as(t, "alice", "realm", "add-member", globex, "--user", ACCOUNTS["carol"]),
            3,
            "alice add-member in globex",
        )
        expect(admin_as(t, "alice", "realm", "move", "acme-shop", globex), 3, "alice move")
        say("alice reviews her realm: who may do what on its VMs.")
        expect(admin_as(t, "alice", "review", "--realm", acme), 0, "alice review --realm")
    finally:
        for u in users.values():
            if u not in existed and _user_exists(u):
                for argv in (["/usr/sbin/userdel", "--", u], ["/usr/sbin/groupdel", "--", u]):
                    r = _account_tool(argv)
                    if r.returncode not in (0, 6):  # 6: already gone (userdel took the group)
                        problems.append(f"realm user {u}: {r.stderr.decode(errors='replace')}")
    return problems


#: the Xen-API chapter's front-end account, the unprivileged user svirt-xenapi runs as (a name
#: no host has: created for the chapter when missing and removed again at its end)
XENAPI_FRONTEND = "svdemo-xenapi"


def xenapi_tour(t: Tour) -> list[str]:
    """The remote front-ends (issues 16, 17): a short scripted session with the real PyPI
    ``XenAPI`` client against svirt-xenapi, which the chapter starts as its own unprivileged
    user on a host of its own (svirtd reads ``frontends`` when it starts) and stops again;
    alice's password is checked by PAM inside svirtd.  Then where the endpoint and the web
    console are on a real host, and how to log in.

    alice's account gets a password only when the demo created it (and it goes with the
    account at the end); an account that existed before is never given one, and the session
    is then skipped with a word why."""
    problems: list[str] = []
    alice = ACCOUNTS["alice"]
    host = Tour(t.base / "xenapi-host", t.src)
    made_fe = not _user_exists(XENAPI_FRONTEND)
    proc = None
    try:
        say(
            "The same gate, over the network.  svirt-xenapi speaks the Xen-API (XML-RPC over "
            "HTTPS) as its own unprivileged user; passwords go to PAM inside svirtd, which "
            "issues the session token, and every call runs through svirtd's gate as the user "
            "who logged in (audited with via=xenapi).  It starts here on a host of its own, "
            f"as the system user {XENAPI_FRONTEND}."
        )
        if alice not in getattr(getattr(t, "accounts", None), "created", ()):
            print(f"{DIM}({alice} existed before the demo, and the demo gives no password to "
                  f"an account it did not make: the session is skipped){RESET}")  # fmt: skip
        else:
            proc = _start_xenapi(host, made_fe)
            problems += _xenapi_session(host, alice)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        host.stop()
        if made_fe and _user_exists(XENAPI_FRONTEND):
            for argv in (["/usr/sbin/userdel", "--", XENAPI_FRONTEND],
                         ["/usr/sbin/groupdel", "--", XENAPI_FRONTEND]):  # fmt: skip
                r = _account_tool(argv)
                if r.returncode not in (0, 6):  # 6: already gone (userdel took the group)
                    problems.append(f"user {XENAPI_FRONTEND}: {r.stderr.decode(errors='replace')}")
    say(
        "On a real host both remote front-ends are off until root turns them on, and listen "
        "on loopback only (docs/xenapi.md, docs/web.md; make install creates their users):"
    )
    print(
        textwrap.dedent("""\
        /etc/secured-virt/secured-virt.conf:   xenapi = yes
                                               web = yes
                                               frontends = xenapi:svirt-xenapi, web:svirt-web
        systemctl restart svirtd               # svirtd reads 'frontends' when it starts
        systemctl enable --now svirt-xenapi svirt-web
        Xen-API:      https://127.0.0.1:9367/  (pin /var/lib/svirt-xenapi/cert.pem)
        web console:  https://127.0.0.1:9368/  log in with your own account's name and password
                      (PAM in svirtd): you see the VMs and buttons your roles allow, no more""")
    )
    return problems


def _start_xenapi(host: Tour, made_fe: bool) -> subprocess.Popen:
    """svirtd with ``frontends = xenapi:<the chapter's user>`` and svirt-xenapi as that user."""
    import socket

    if made_fe:
        _account_tool(
            ["/usr/sbin/useradd", "--system", "--no-create-home", "--shell",
             "/usr/sbin/nologin", "--", XENAPI_FRONTEND],
            check=True,
        )  # fmt: skip
    fe = pwd.getpwnam(XENAPI_FRONTEND)
    host.base.mkdir()
    host.setup()
    state = host.base / "xenapi-state"
    state.mkdir(mode=0o700)
    os.chown(state, fe.pw_uid, fe.pw_gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host.xenapi_port = s.getsockname()[1]
    host.xenapi_cert = state / "cert.pem"
    with open(host.conf, "a") as f:
        f.write(
            f"frontends = xenapi:{XENAPI_FRONTEND}\nxenapi = yes\n"
            f"xenapi_port = {host.xenapi_port}\nxenapi_cert = {host.xenapi_cert}\n"
            f"xenapi_key = {state / 'key.pem'}\n"
        )
    host.start_daemon()
    code = (
        f"import sys; sys.path.insert(0, {str(host.src)!r}); "
        "from secured_virt.xenapi.server import main; sys.exit(main(sys.argv[1:]))"
    )
    proc = subprocess.Popen(
        [*as_uid(fe), host.python, "-I", "-c", code, "--config", str(host.conf),
         "--log-level", "warning"],
        stdin=subprocess.DEVNULL, cwd="/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )  # fmt: skip
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"demo: svirt-xenapi exited with {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", host.xenapi_port), 0.2),
        ):
            if host.xenapi_cert.exists():
                return proc
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("demo: svirt-xenapi did not start")


def _xenapi_session(host: Tour, alice: str) -> list[str]:
    """The scripted session, each call shown as typed and its answer as the client got it."""
    import secrets
    import ssl
    import xmlrpc.client

    problems: list[str] = []
    try:
        import XenAPI
    except ImportError:
        print(f"{DIM}(the PyPI XenAPI client is not installed here: pip install XenAPI){RESET}")
        return problems
    password = secrets.token_urlsafe(12)
    _account_tool(
        ["/usr/sbin/chpasswd"], input=f"{alice}:{password}\n", check=True
    )  # the demo's own account; its shadow line goes with it at the end

    def show(code: str) -> None:
        print(f"{DIM}>>>{RESET} {code}", flush=True)

    def failure(call) -> list[str]:
        try:
            call()
        except XenAPI.Failure as exc:
            print(f"XenAPI.Failure: {exc.details}")
            return [str(d) for d in exc.details]
        print("(no failure)")
        return []

    url = f"https://127.0.0.1:{host.xenapi_port}/"
    say(
        f"alice runs a Xen-API script from her own machine.  It pins the endpoint's "
        f"self-signed certificate ({host.xenapi_cert.name}) and logs in with her password."
    )
    ctx = ssl.create_default_context(cafile=str(host.xenapi_cert))
    show(f's = XenAPI.Session("{url}", transport=SafeTransport(context=pinned))')
    s = XenAPI.Session(url, transport=xmlrpc.client.SafeTransport(context=ctx))
    show(f's.xenapi.login_with_password("{alice}", "********", "1.0", "svirt-demo")')
    s.xenapi.login_with_password(alice, password, "1.0", "svirt-demo")
    show("for vm in s.xenapi.VM.get_all_records().values(): print(vm['name_label'], ...)")
    recs = s.xenapi.VM.get_all_records()
    ref = {}
    for r, vm in sorted(recs.items(), key=lambda kv: kv[1]["name_label"]):
        ref[vm["name_label"]] = r
        print(f"  {vm['name_label']:<10} {vm['power_state']:<8} {r}")
    if sorted(ref) != ["alice-db", "alice-web"]:
        problems.append(f"xenapi: alice sees {sorted(ref)}")
    say("She starts her database VM: the gate allows it, as it does for svirsh.")
    show('s.xenapi.VM.start(ref["alice-db"], False, False)')
    s.xenapi.VM.start(ref.get("alice-db", ""), False, False)
    show('s.xenapi.VM.get_power_state(ref["alice-db"])')
    state = s.xenapi.VM.get_power_state(ref.get("alice-db", ""))
    print(repr(state))
    if state != "Running":
        problems.append(f"xenapi: alice-db is {state} after VM.start")
    say(
        "Rebooting is not in her role: PERMISSION_DENIED carries the gate's own reason.  And "
        "bob's VM is not hers to see: its UUID (root knows it) is no handle for her."
    )
    show('s.xenapi.VM.clean_reboot(ref["alice-web"])')
    got = failure(lambda: s.xenapi.VM.clean_reboot(ref.get("alice-web", "")))
    if got[:1] != ["PERMISSION_DENIED"] or got[-1:] != ["rbac"]:
        problems.append(f"xenapi: reboot answered {got}")
    bob_build = "4dea22b3-1d52-d8f3-2516-782e98a23fb0"  # etc/demo/node.xml
    show(f's.xenapi.VM.hard_shutdown("{bob_build}")')
    got = failure(lambda: s.xenapi.VM.hard_shutdown(bob_build))
    if got[:1] != ["HANDLE_INVALID"]:
        problems.append(f"xenapi: bob's VM answered {got}")
    say("She logs out; the token is void in svirtd at once, so the old session is refused.")
    old = s.handle
    show("s.xenapi.session.logout()")
    s.xenapi.session.logout()
    show("s.VM.get_all(old_session)")
    answer = getattr(s, "VM.get_all")(old)  # the raw call: the client would log in again
    print(answer)
    if answer.get("ErrorDescription", [None])[0] != "SESSION_INVALID":
        problems.append(f"xenapi: the old session answered {answer}")
    say(
        "svirtd audited each call as alice; every record also carries via=xenapi and her "
        "address (audit show --json shows them)."
    )
    if host.admin("audit", "show", "--user", alice):
        problems.append("xenapi: audit show failed")
    return problems


def _nss_knows(lookup, name: str) -> bool:
    """Whether the passwd or group database (``lookup``: pwd.getpwnam or grp.getgrnam) has
    ``name``: the tour creates only the accounts that are missing, and deletes only those."""
    try:
        lookup(name)
    except KeyError:
        return False
    return True


def _user_exists(name: str) -> bool:
    return _nss_knows(pwd.getpwnam, name)


def with_demo_accounts(path: Path) -> bytes:
    """etc/demo's UA or node file with the tour's people renamed to their demo accounts
    (``<User name=...>`` in UA, ``<svirt:owner>`` in the domains' metadata)."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    doc = etree.parse(str(path), parser)
    for el in doc.iter("User"):
        el.set("name", ACCOUNTS.get(el.get("name"), el.get("name")))
    for el in doc.iter("{https://secured-virt.org/xmlns/svirt/1}owner"):
        el.text = ACCOUNTS.get((el.text or "").strip(), el.text)
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8")


class Accounts:
    """The demo's accounts: created when missing, and only those deleted again."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.groups: list[str] = []

    def ensure(self) -> None:
        for person in USERS:
            name = ACCOUNTS[person]
            if _user_exists(name):
                continue  # someone's existing account: used, never touched
            had_group = _group_exists(name)
            print(
                f"{DIM}(creating the demo account '{name}': a system user, no login shell, "
                f"removed at the end){RESET}",
                flush=True,
            )
            with _interrupts_deferred():  # the account and its record, or neither
                self.created.append(name)
                try:
                    _account_tool(
                        ["/usr/sbin/useradd", "--system", "--no-create-home", "--shell",
                         "/usr/sbin/nologin", "--", name],
                        check=True,
                    )  # fmt: skip
                finally:  # the group useradd made is ours too
                    if not had_group and _group_exists(name):
                        self.groups.append(name)

    def remove(self) -> list[str]:
        """Delete what ensure() created; returns what could not be removed."""
        left = []
        for name in reversed(self.created):
            if _user_exists(name):
                r = _account_tool(["/usr/sbin/userdel", "--", name])
                if r.returncode not in (0, 6):  # 6: no such user (already gone)
                    left.append(f"account {name}: {r.stderr.decode(errors='replace').strip()}")
        for name in self.groups:
            if _group_exists(name):
                r = _account_tool(["/usr/sbin/groupdel", "--", name])
                if r.returncode not in (0, 6):
                    left.append(f"group {name}: {r.stderr.decode(errors='replace').strip()}")
        self.created.clear()
        self.groups.clear()
        return left


#: the signals that end the tour (SIGINT raises KeyboardInterrupt; _interrupt the others)
_ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _interrupts_deferred():
    """A Ctrl-C (or SIGTERM/SIGHUP) that arrives inside the block ends the tour only once the
    block is done.  For an account change and its bookkeeping: interrupted between them, the
    clean-up either misses an account that is being made (an interrupt while Popen starts
    useradd left it running on its own, and the account appeared after the clean-up looked)
    or runs userdel against useradd's lock.  Main thread only (signal handlers)."""
    got: list[int] = []
    before = {sig: signal.signal(sig, lambda signum, _f: got.append(signum)) for sig in _ENDING}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        if got:
            raise KeyboardInterrupt(f"signal {got[0]}")


def _account_tool(argv: list[str], *, input: str | None = None, check: bool = False):
    """useradd, userdel, groupdel or chpasswd, run to its end: in a session of its own (a
    terminal's Ctrl-C does not reach it) and with the tour's interrupts deferred until it is
    done (``_interrupts_deferred``; callers that must record what it did hold that block
    around both)."""
    with _interrupts_deferred():
        return subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=input is not None,
            start_new_session=True,
            check=check,
        )


def _group_exists(name: str) -> bool:
    return _nss_knows(grp.getgrnam, name)


def _interrupt(signum, _frame):
    """SIGTERM/SIGHUP end the tour like Ctrl-C does: through the clean-up."""
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    if os.geteuid() != 0:
        print(
            "make demo must run as root: it starts svirtd and runs svirsh as the demo's "
            f"accounts ({', '.join(ACCOUNTS[u] for u in USERS)}) with setpriv.",
            file=sys.stderr,
        )
        return 4
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    accounts = Accounts()
    base = Path(tempfile.mkdtemp(prefix="svirt-demo."))
    t = Tour(base)
    t.accounts = accounts  # the Xen-API chapter gives passwords only to accounts made here
    left: list[str] = []
    try:
        accounts.ensure()
        t.setup()
        t.load_policy()
        t.start_daemon()
        problems = tour(t)
    except KeyboardInterrupt:
        print("\ndemo: interrupted; cleaning up", file=sys.stderr)
        problems = ["interrupted"]
    finally:
        # a second Ctrl-C must not stop the clean-up half-way
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            t.stop()
            left = accounts.remove()
            shutil.rmtree(base, ignore_errors=True)
            if base.exists():
                left.append(f"directory {base}")
        finally:
            signal.signal(signal.SIGINT, old)
    if left:
        print("demo: could not remove: " + "; ".join(left), file=sys.stderr)
        return 1
    if problems == ["interrupted"]:
        return 130
    if problems:
        print("\ndemo: unexpected results:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"\n{BOLD}# End of the tour: every step behaved as described.{RESET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
