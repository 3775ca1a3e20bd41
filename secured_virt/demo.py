"""`make demo`: a narrated tour of secured-virt on libvirt's test driver.

It sets up a private, throw-away host configuration (nothing under /etc is touched): copies of
etc/demo's UA/PA and test-driver node, a config, an audit log and a socket in a temp directory.
It starts svirtd (root, holding the one test-driver connection, so state lasts for the tour),
creates the demo's accounts alice, bob and carol if this machine lacks them (system users with
no login shell), and runs the real ``svirsh`` as those real uids with ``setpriv`` — svirtd
learns who they are from the kernel.  Root's side uses ``svirt-admin``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "etc" / "demo"
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
        for name in ("ua.xml", "pa.xml", "node.xml"):
            shutil.copy(DEMO / name, etc / name)
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
            """)
        )
        for root, dirs, files in os.walk(self.base):
            for d in dirs:
                p = os.path.join(root, d)
                if p != str(self.base / "log"):
                    os.chmod(p, 0o755)  # noqa: S103
            for f in files:
                os.chmod(os.path.join(root, f), 0o755 if root.endswith("bin") else 0o644)
        for user in USERS:
            try:
                pwd.getpwnam(user)
            except KeyError:
                print(
                    f"{DIM}(creating the demo account '{user}': a system user, no login "
                    f"shell){RESET}"
                )
                subprocess.run(
                    [
                        "/usr/sbin/useradd",
                        "--system",
                        "--no-create-home",
                        "--shell",
                        "/usr/sbin/nologin",
                        user,
                    ],
                    check=True,
                )

    def load_policy(self) -> None:
        """Install the host's sHype policy for boot, before svirtd starts (quietly)."""
        subprocess.run(
            [
                self.python,
                "-I",
                str(self.src / "bin" / "svirt-admin"),
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
                self.python,
                "-I",
                str(self.src / "bin" / "svirtd"),
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
            self.daemon.wait(10)

    # -- running things -----------------------------------------------------------------------
    def svirsh(self, user: str | None, *args: str, host: str = "") -> int:
        who = (user or "root") + (f"@{host}" if host else "")
        shown = " ".join(args)
        print(f"{DIM}{who}${RESET} svirsh {shown}", flush=True)
        argv = [
            self.python,
            "-I",
            str(self.src / "bin" / "svirsh"),
            "--socket",
            str(self.sock),
            *args,
        ]
        if user is None:
            argv.insert(3, "--daemon")
        else:
            pw = pwd.getpwnam(user)
            argv = [
                "/usr/bin/setpriv",
                f"--reuid={pw.pw_uid}",
                f"--regid={pw.pw_gid}",
                "--clear-groups",
                "--",
                *argv,
            ]
        rc = subprocess.run(
            argv,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            stdin=subprocess.DEVNULL,
            cwd="/",
        ).returncode
        if rc:
            print(f"{DIM}(exit code {rc}){RESET}")
        return rc

    def admin(self, *args: str) -> int:
        print(f"{DIM}root${RESET} svirt-admin {' '.join(args)}", flush=True)
        argv = [
            self.python,
            "-I",
            str(self.src / "bin" / "svirt-admin"),
            "--config",
            str(self.conf),
            *args,
        ]
        rc = subprocess.run(argv, stdin=subprocess.DEVNULL).returncode
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
    expect(t.admin("review", "user", "alice"), 0, "review alice")
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
    expect(t.svirsh("alice", "--as", "bob", "destroy", "bob-build"), 3, "alice --as bob")
    say("Root asks why alice was refused:")
    expect(t.admin("check", "alice", "destroy", "bob-build", "--explain"), 3, "explain")
    say("carol may look but not touch:")
    expect(t.svirsh("carol", "suspend", "alice-web"), 3, "carol suspend")
    problems += acm_tour(t)
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
    say("dry-run shows every check a start would make, and which one fails:")
    expect(t.svirsh(None, "dry-run", "alice-web"), 0, "dry-run")
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
    host3 = Tour(t.base / "host3", t.src, t.base / "demo.other-security_policy.xml")
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
            "A third host runs a policy of another name.  The label means nothing there, so "
            "the restore is refused before the VM runs."
        )
        host3.policy_file.write_text(
            (DEMO / "acm-policy.xml").read_text().replace("demo.hosting", "demo.other")
        )
        host3.base.mkdir()
        host3.setup()
        host3.load_policy()
        host3.start_daemon()
        expect(host3.svirsh(None, "destroy", "alice-web", host="host3"), 0, "host3 destroy")
        expect(host3.svirsh(None, "restore", str(image), host="host3"), 3, "host3 restore")
    finally:
        host2.stop()
        host3.stop()
    return problems


def main() -> int:
    if os.geteuid() != 0:
        print(
            "make demo must run as root: it starts svirtd and runs svirsh as the demo's "
            "users (alice, bob, carol) with setpriv.",
            file=sys.stderr,
        )
        return 4
    base = Path(tempfile.mkdtemp(prefix="svirt-demo."))
    t = Tour(base)
    try:
        t.setup()
        t.load_policy()
        t.start_daemon()
        problems = tour(t)
    finally:
        t.stop()
        shutil.rmtree(base, ignore_errors=True)
    if problems:
        print("\ndemo: unexpected results:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"\n{BOLD}# End of the tour: every step behaved as described.{RESET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
