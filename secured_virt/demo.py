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
    def __init__(self, base: Path):
        self.base = base
        self.src = base / "src"
        self.conf = base / "secured-virt.conf"
        self.sock = base / "run" / "svirtd.sock"
        self.python = sys.executable
        self.daemon: subprocess.Popen | None = None

    # -- set-up -------------------------------------------------------------------------------
    def setup(self) -> None:
        os.chmod(self.base, 0o755)  # noqa: S103 - the demo's users must read it
        for pkg in ("rbac", "policy", "secured_virt", "bin"):
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
    def svirsh(self, user: str | None, *args: str) -> int:
        who = user or "root"
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
            argv.insert(4, "--daemon")
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


def tour(t: Tour) -> list[str]:
    """The narrated steps; returns a list of surprises (empty when all went as expected)."""
    problems = []

    def expect(rc, want, what):
        if rc != want:
            problems.append(f"{what}: exit {rc}, expected {want}")

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
    say("Every decision above — allowed or denied — is one hash-chained audit record.")
    expect(t.admin("audit", "verify"), 0, "audit verify")
    t.admin("audit", "show", "--denied")
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
