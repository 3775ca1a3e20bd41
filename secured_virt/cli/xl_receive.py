"""svirt-xl-receive: the destination's side of an xl migration, with the domain's label.

The source's xl backend never lets xl reach ``xl migrate-receive`` here directly: it runs this
program over root's ssh with the domain's record as arguments (backends/xl_migrate says
exactly what travels and how), and the stream on stdin/stdout.  Before xl reads a byte of the
stream, this program decides, under this host's instantiation lock:

* the domain is not running here already (under its name or xl's ``NAME--incoming``), and no
  other domain of that name is defined here;
* with sHype/ACM on: the label names this host's active policy (a label travels by name only
  to a host running a policy of that name) and a VM label of it, which gets this host's
  ssidref; and the Chinese Wall against what runs here and STE against the disks' resource
  labels here admit it (the same check as a start here).

Every decision is audited here (``op`` ``migrate-receive``, ``via`` ``ssh``); a refusal is one
line on stderr starting with ``svirt-xl-receive: refused:``, which xl on the source passes on
and the source's backend reports (the domain keeps running there: xl suspends nothing before
the receiver's banner, which only the real xl writes).  Admitted, the domain gets its owner
and label in a transient config (and xl's incoming name too), and the real ``xl
migrate-receive`` runs on this program's stdin/stdout; the lock is held until the arriving
domain is listed by xl, so that from then on every check here counts it.  xl creates it as
``NAME--incoming`` and renames it to NAME only once the source says go; when xl ends, the
domid xl gave it tells which of the two names it runs under, and only those keep the label
(received: NAME; left behind by xl when the source vanished: ``NAME--incoming``; destroyed by
xl: neither, even if another domain took the name meanwhile).  Its end is audited as the
decision's outcome.  What runs here is read from ``xl list`` (never ``xl domid``, which says
"does not exist" when xl fails); if xl cannot list the domains before the stream the domain is
refused, and if it cannot tell at the end which name the domain runs under, the receiver exits
1 naming the failure and keeps the label under every name xl's status leaves possible.

Exit codes: 0 received, 1 xl failed, 2 usage, 3 refused, 4 bad configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import subprocess
import sys
import textwrap
import time

from secured_virt.requests import EXIT_BAD_POLICY, EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_USAGE

PROG = "svirt-xl-receive"
POLL_SECONDS = 0.05


class Refused(Exception):
    """The domain may not come here: ``check`` says which check, the message why."""

    def __init__(self, check: str, why: str) -> None:
        super().__init__(why)
        self.check = check


#: (code, meaning) of its exit, shown by --help and read by man/generate.py
EXIT_CODES = (
    (EXIT_OK, "received: xl migrate-receive ended and the domain runs here"),
    (
        EXIT_FAILED,
        "not received: a domain of that name runs here already, or one of that name with "
        "another UUID is defined here (refused before the stream: the domain keeps running on "
        "the source), or xl failed",
    ),
    (EXIT_USAGE, "usage error, or a name, UUID or label that is not valid"),
    (
        EXIT_DENIED,
        "refused: not run as root, the sHype/ACM policy does not admit the domain here, or the "
        "audit log cannot be written",
    ),
    (EXIT_BAD_POLICY, "bad configuration on this host, or its backend is not xl"),
)

EPILOG = """\
It runs as root, started by root's ssh from the source host's xl backend with
the migration stream on stdin/stdout; people do not run it.  It reads the
configuration %(config)s (backend = xl, acm,
xl_path, xl_transient_dir, audit_log) and audits its decision in audit_log.

example (what the source's svirsh migrate runs, through xl migrate):
  ssh -o BatchMode=yes -- HOST '/usr/local/sbin/svirt-xl-receive --name=web1
    --uuid=UUID --owner=alice --label-policy=example --label=blue
    --disk=phy:/dev/vg/web1'

exit status:
%(codes)s"""


DESCRIPTION = (
    "The destination's side of an xl migration: decides, under this host's instantiation lock "
    "and before xl reads the stream, whether the arriving domain may run here with its "
    "sHype/ACM label (the same checks as a start here), audits the decision, then runs the "
    "real 'xl migrate-receive'."
)


def build_parser() -> argparse.ArgumentParser:
    from secured_virt.config import CONFIG_PATH

    codes = "\n".join(
        textwrap.fill(t, 78, initial_indent=f"  {c}  ", subsequent_indent="     ")
        for c, t in EXIT_CODES
    )
    p = argparse.ArgumentParser(
        prog=PROG,
        description=textwrap.fill(DESCRIPTION, 78),
        epilog=EPILOG % {"config": CONFIG_PATH, "codes": codes},
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.exit_codes = EXIT_CODES  # read by man/generate.py
    p.add_argument(
        "--config", metavar="FILE", help="configuration file (default: the one named below)"
    )
    p.add_argument("--name", required=True, help="the arriving domain's name")
    p.add_argument("--uuid", default="", help="its UUID")
    p.add_argument("--owner", metavar="USER", default=None, help="its secured-virt owner")
    p.add_argument(
        "--label-policy",
        metavar="POLICY",
        default=None,
        help="the policy its label belongs to (with --label)",
    )
    p.add_argument(
        "--label", default=None, help="its VM label: a name, never an ssidref (with --label-policy)"
    )
    p.add_argument(
        "--disk",
        metavar="RESOURCE",
        action="append",
        default=[],
        help="a disk resource it uses (xl's form, e.g. phy:/dev/vg/web1); repeated for each",
    )
    return p


def _say(text: str) -> None:
    sys.stderr.write(f"{PROG}: {text}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None, *, peer: str | None = None) -> int:
    from secured_virt.backends.base import BackendError
    from secured_virt.backends.xl_record import make_record
    from secured_virt.config import ConfigError, load_config

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    if os.geteuid() != 0:
        _say("refused: must run as root (root's ssh from the source host runs it)")
        return EXIT_DENIED
    if (args.label is None) != (args.label_policy is None):
        _say("--label and --label-policy go together")
        return EXIT_USAGE
    try:
        rec = make_record(args.name, args.uuid, args.owner, args.label_policy, args.label)
        cfg = load_config(args.config, caller_uid=0)
    except BackendError as exc:
        _say(f"refused: {exc}")
        return EXIT_USAGE
    except ConfigError as exc:
        _say(f"refused: bad configuration on this host: {exc}")
        return EXIT_BAD_POLICY
    if cfg.backend != "xl":
        _say(f"refused: this host's secured-virt uses backend = {cfg.backend}, not xl")
        return EXIT_BAD_POLICY
    return Receiver(cfg, rec, args.disk, peer).run()


class Receiver:
    """One incoming domain: decide, audit, hand the stream to xl, audit its end."""

    def __init__(self, cfg, rec: dict, disks: list[str], peer: str | None) -> None:
        from secured_virt.access.audit import AuditLog
        from secured_virt.backends.factory import open_backend

        self.cfg, self.rec, self.disks, self.peer = cfg, rec, disks, peer
        self.name = rec["name"]
        self.backend = open_backend(
            "xl",
            cfg.uri,
            xl_path=cfg.xl_path,
            xl_config_dir=cfg.xl_config_dir,
            xl_transient_dir=cfg.xl_transient_dir,
        )
        self.audit = AuditLog.from_config(cfg)
        self.acm = None
        #: the domid xl gave the arriving domain (None until xl lists it)
        self.domid: int | None = None
        #: why xl could not list the domains when last asked while the stream ran (None if it
        #: could)
        self.lookup_failed: str | None = None
        if cfg.acm:
            from secured_virt.shype.enforcer import AcmEnforcer

            self.acm = AcmEnforcer(cfg, lambda: self.backend)

    # -- the decision ---------------------------------------------------------------------
    def label_text(self) -> str | None:
        lab = self.rec.get("label")
        return f"ACM:{lab['policy']}:{lab['name']}" if lab else None

    def check(self) -> str:
        """Why the domain may come (the audit's rule), or Refused.  Under the lock."""
        from secured_virt.backends.xl_migrate import incoming_name

        name = self.name
        running = self._running_ids()  # an xl that cannot list is a refusal, not "none"
        for n in (name, incoming_name(name)):
            if n in running:
                raise Refused("state", f"a domain named '{n}' already runs on this host")
        if self.acm is None:
            return f"sHype/ACM is off on this host; {self.label_text() or 'no label'} kept"
        import policy
        from policy.xsm import canonical_resource
        from secured_virt.shype.enforcer import verdict_text

        active = self.acm.active
        lab = self.rec.get("label")
        if lab and lab["policy"] != active.name:
            raise Refused(
                "acm",
                f"this host runs sHype/ACM policy '{active.name}'; the label of '{name}' "
                f"({self.label_text()}) belongs to policy '{lab['policy']}': a label travels "
                "by name only to a host running a policy of that name",
            )
        resources = {}
        for d in self.disks:
            try:
                key = canonical_resource(d)
            except policy.XsmError as exc:
                raise Refused("acm", f"disk {d!r}: {exc}") from None
            resources[key] = self.acm.host.resource_get_label(key)
        v = self.acm.check_instantiate(name, self.label_text(), resources)
        if not v.allowed:
            raise Refused("acm", verdict_text(v))
        ssidref = active.ssidref(lab["name"]) if lab else None
        got = f" (ssidref {ssidref:#x} here)" if ssidref is not None else ""
        return f"{self.label_text() or 'unlabelled'} admitted under {active.name}{got}"

    def _decide(self, allowed: bool, check: str, rule: str):
        from secured_virt.access.audit import AuditError

        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = str(os.getuid())
        try:
            return self.audit.record_decision(
                uid=os.getuid(),
                user=user,
                op="migrate-receive",
                vm=self.name,
                vm_uuid=self.rec["uuid"] or None,
                allowed=allowed,
                check=check,
                rule=rule,
                via="ssh",
                pid=os.getpid(),
                peer=self.peer,
            )
        except AuditError as exc:
            raise Refused("audit", f"the audit log cannot be written: {exc}") from None

    # -- the run --------------------------------------------------------------------------
    def run(self) -> int:
        from secured_virt.backends.base import BackendError

        lock = self.acm.exclusive() if self.acm is not None else contextlib.nullcontext()
        try:
            return self._run(lock)
        except BackendError as exc:  # the lock's rebuild of what runs here: nothing started
            why = (
                f"this host's sHype/ACM state cannot be rebuilt from what runs here ({exc}), "
                f"so '{self.name}' cannot be checked against it; the domain keeps running on "
                f"the source: migrate it again once `{self.cfg.xl_path} list` works here"
            )
            try:
                self._decide(False, "state", why)
            except Refused as refused:
                _say(f"refused: {refused}")
                return EXIT_DENIED
            _say(f"refused: {why}")
            return EXIT_FAILED

    def _run(self, lock) -> int:
        """run under the lock; a BackendError out of here comes from taking the lock (the
        calls made after xl started handle their own)."""
        from secured_virt.backends.base import BackendError

        try:
            with lock:
                try:
                    rule = self.check()
                except Refused as exc:
                    self._decide(False, exc.check, str(exc))
                    raise
                except BackendError as exc:
                    self._decide(False, "state", str(exc))
                    raise Refused("state", str(exc)) from None
                ref = self._decide(True, "acm" if self.acm is not None else "state", rule)
                try:
                    done = self.backend.receive_prepare(self.rec)
                except (BackendError, OSError) as exc:
                    self._outcome(ref, f"error:{exc}")
                    raise Refused("state", str(exc)) from None
                proc = self._spawn_xl(ref, done)
                self._wait_listed(proc)
        except Refused as exc:
            _say(f"refused: {exc}")
            return EXIT_DENIED if exc.check in ("acm", "audit") else EXIT_FAILED
        rc = proc.wait()
        running_as, unknown = self._running_as(rc)
        why = None
        try:
            done(running_as)
        except (BackendError, OSError) as exc:  # a label file we meant to remove is still there
            why = (
                f"xl migrate-receive exited with status {rc}, but the labels of the names "
                f"'{self.name}' does not run under could not all be removed ({exc}): remove "
                f"{self.cfg.xl_transient_dir}/NAME.cfg of each name nothing runs under here"
            )
        if why is None and unknown is None and rc == 0 and self.name in running_as:
            self._outcome(ref, "ok")
            return EXIT_OK
        why = why or self._why_not(rc, running_as, unknown)
        self._outcome(ref, f"error:{why}")
        _say(why)
        return EXIT_FAILED

    def _running_as(self, rc: int) -> tuple[list[str], str | None]:
        """The names the arrived domain runs under now, told by the domid xl gave it (a
        rename keeps it): NAME once xl renamed it, xl's NAME--incoming while xl left it
        behind (the source vanished before its permission to go), none once xl destroyed it
        (the stream broke, or NAME was taken when xl renamed it: then another domain runs
        under NAME, which must not get this one's label).  With why xl could not tell, if it
        could not (its domid never seen, or xl cannot list the domains now): then every name
        xl's status leaves possible, so that a domain running here is never unlabelled (xl
        exits 0 only once it renamed the domain to NAME or destroyed it)."""
        from secured_virt.backends.base import BackendError
        from secured_virt.backends.xl_migrate import incoming_name, running_as

        names = [self.name, incoming_name(self.name)]
        possible = names[:1] if rc == 0 else names
        if self.domid is None and self.lookup_failed is None:
            return [], None  # xl listed neither name, even once it ended: nothing is here
        if self.domid is None:
            return possible, self.lookup_failed
        try:
            return running_as(self.backend, self.domid, names), None
        except BackendError as exc:
            return possible, str(exc)

    def _why_not(self, rc: int, running_as: list[str], unknown: str | None = None) -> str:
        from secured_virt.backends.xl_migrate import incoming_name

        status = f"xl migrate-receive exited with status {rc}"
        incoming = incoming_name(self.name)
        if unknown is not None:
            where = " and ".join(f"'{n}'" for n in running_as)
            return (
                f"{status}, but this host's xl could not tell which name the arrived domain "
                f"runs under (domain {self.domid if self.domid is not None else 'unknown'}): "
                f"{unknown}. Its label {self.label_text() or 'none'} is kept under {where} so "
                f"that it is not unlabelled if it runs: once `{self.cfg.xl_path} list` works "
                f"here, check which of them runs (and that '{self.name}' does not run on the "
                f"source too), destroy a copy that must not run (svirsh destroy NAME), and "
                f"remove {self.cfg.xl_transient_dir}/NAME.cfg of a name nothing runs under"
            )
        if incoming in running_as:
            return (
                f"{status} and left the arriving domain behind on this host as '{incoming}' "
                f"(domain {self.domid}, paused), with its label {self.label_text() or 'none'}: "
                f"once '{self.name}' runs on the source again, destroy it here "
                f"(svirsh destroy {incoming})"
            )
        if running_as:
            return (
                f"{status}, yet the domain runs on this host as '{self.name}' (domain "
                f"{self.domid}), with its label: make sure it does not run on the source too"
            )
        if self.domid is None:
            return f"{status}; xl received no domain named '{self.name}' on this host"
        return (
            f"{status}; xl destroyed its copy of '{self.name}' (its messages above say why), "
            "so the domain did not stay on this host"
        )

    def _spawn_xl(self, ref, done):
        """The real ``xl migrate-receive`` on our stdin/stdout (argv, scrubbed env)."""
        from secured_virt.backends.xl_run import XL_ENV

        try:
            return subprocess.Popen(
                [self.cfg.xl_path, "migrate-receive"], env=dict(XL_ENV), close_fds=True
            )
        except OSError as exc:
            done(())
            self._outcome(ref, f"error:cannot run {self.cfg.xl_path}: {exc.strerror}")
            raise Refused("state", f"cannot run {self.cfg.xl_path}: {exc.strerror}") from None

    def _running_ids(self) -> dict[str, int]:
        """What runs here, by name (backends.xl_migrate.running_ids: ``xl list``, never ``xl
        domid``, which says "does not exist" for any failure); BackendError if xl cannot."""
        from secured_virt.backends.xl_migrate import running_ids

        return running_ids(self.backend)

    def _listed(self) -> int | None:
        """The arriving domain's domid if xl lists it: xl creates it as NAME--incoming and
        renames it to NAME only once the source gave its permission to go (xl_migrate.c).
        BackendError if xl cannot list the domains."""
        from secured_virt.backends.xl_migrate import incoming_name

        running = self._running_ids()
        for n in (incoming_name(self.name), self.name):
            if n in running:
                return running[n]
        return None

    def _wait_listed(self, proc) -> None:
        """Keep the lock until xl lists the arriving domain (or gives up): from then on the
        rebuilt sHype state counts it, with the label of its transient config.  Its domid
        tells it from another domain that takes its name later (see _running_as).  While xl
        cannot list the domains, the lock stays held (no decision here can count the arriving
        domain) until it can or xl migrate-receive ends; the failure is remembered, since
        then nobody can tell which domain is the arrived one."""
        from secured_virt.backends.base import BackendError

        while True:
            ended = proc.poll() is not None  # first: a domain xl left behind is still seen
            try:
                self.domid, self.lookup_failed = self._listed(), None
            except BackendError as exc:
                self.lookup_failed = str(exc)
            if self.domid is not None or ended:
                return
            time.sleep(POLL_SECONDS)

    def _outcome(self, ref, outcome: str) -> None:
        with contextlib.suppress(Exception):  # the decision is written; syslog has the rest
            self.audit.record_outcome(ref, outcome)


def entry(*, require_isolated: bool = True) -> None:
    """The program (console script, ``python -m``), hardened first; never returns.  The
    peer's address is sshd's SSH_CONNECTION, read before the environment is scrubbed, for the
    audit only (it decides nothing)."""
    from secured_virt.hardening import start_program

    conn = (os.environ.get("SSH_CONNECTION") or "").split()
    peer = f"{conn[0]}:{conn[1]}" if len(conn) >= 2 else None
    start_program(lambda: main(peer=peer), require_isolated=require_isolated)


if __name__ == "__main__":  # python -m: the caller chose the interpreter's flags
    entry(require_isolated=False)
