"""svirt-admin's editing and understanding commands: edit, assign, deassign, grant, revoke,
add-role, rm-role, diff.

Every change goes one way, whether it comes from an editor or a command line:

  lock both files -> read them (trusted) -> change -> validate the WHOLE policy (UA and PA
  together, with the operation catalogue) -> show the impact (who gains or loses what, where)
  -> ask "Install? [y/N]" (or --yes / --dry-run) -> audit -> install atomically with a backup
  -> tell a running svirtd to reload.

A policy that does not validate is never installed; ``edit`` offers to edit again or to leave.
Exit codes: 0 ok (also: nothing to change), 1 invalid, refused, declined or failed, 2 usage,
3 denied (a delegated admin without rbac-admin), 4 bad configuration or untrusted policy file.

Who may change the policy: root.  Under sudo, the invoking user must also hold the
``rbac-admin`` operation on the host object in the policy in force, and ``edit`` runs their
editor as them (like sudoedit), never as root.  Under sudo ``--config`` is refused (it is
root's alone, and the caller is the invoker), and the reload request after an install reaches
svirtd with the invoker's credentials (secured_virt.client), so svirtd checks their
daemon-admin right: a delegated admin without it is told that svirtd picks the new files up
by itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import sys
import tempfile

from secured_virt.access.identity import invoking_uid
from secured_virt.access.operations import CATALOGUE
from secured_virt.requests import EXIT_BAD_POLICY, EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_USAGE

PROG = "svirt-admin"
#: where edit makes its private (0700) directory for the copy being edited
EDIT_TMP = "/tmp"  # noqa: S108 - only ever used through mkdtemp (random name, 0700)
RBAC_ADMIN = "rbac-admin"


class _Stop(Exception):
    """End the command with ``code`` after printing ``message`` (to stderr unless code 0)."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(message)
        self.code = code


def _err(msg: str) -> None:
    sys.stderr.write(msg.rstrip("\n") + "\n")


def _ask(prompt: str) -> str:
    """One answer from stdin ('' at end of input, which always means the safe choice)."""
    sys.stdout.write(prompt)
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        sys.stdout.write("\n")
    return line.strip().lower()


# -- the session: config, caller, lock, current files -----------------------------------------
class _Session:
    """Everything one change needs; use as a context manager (it holds the edit lock)."""

    def __init__(self, args, command: str):
        from secured_virt.access.identity import IdentityError, identify_process
        from secured_virt.config import ConfigError, load_config

        self.command = command
        try:
            self.cfg = load_config(args.config, caller_uid=invoking_uid())
        except ConfigError as exc:
            raise _Stop(EXIT_BAD_POLICY, f"{PROG}: {exc}") from None
        if os.geteuid() != 0:
            raise _Stop(
                EXIT_FAILED,
                f"{PROG} {command}: only root can change the policy files "
                f"({self.cfg.ua}, {self.cfg.pa}); run it as root (or through sudo)",
            )
        try:
            self.ident = identify_process()
        except IdentityError as exc:
            raise _Stop(EXIT_FAILED, f"{PROG}: {exc}") from None
        self.paths = {"ua": self.cfg.ua, "pa": self.cfg.pa}
        self.old: dict[str, bytes | None] = {}
        self.before = None
        self.before_error: str | None = None
        self._delegation_rule = ""
        self._lock = None

    @property
    def delegated(self) -> bool:
        """Run through sudo by someone other than root."""
        return self.ident.uid != 0

    def run_as(self) -> pwd.struct_passwd | None:
        return pwd.getpwuid(self.ident.uid) if self.delegated else None

    def __enter__(self) -> _Session:
        import rbac
        from secured_virt.fsutil import UnsafeFileError
        from secured_virt.rolefiles.install import (
            LockBusy,
            PolicyLock,
            read_current,
            remove_stale_temps,
        )

        self._lock = PolicyLock(
            [self.paths["ua"], self.paths["pa"]],
            user=self.ident.user,
            via="sudo" if self.delegated else "",
            state_dir=self.cfg.rolefile_state_dir,
        )
        try:
            self._lock.__enter__()
        except LockBusy as exc:
            raise _Stop(EXIT_FAILED, f"{PROG} {self.command}: {exc}") from None
        except UnsafeFileError as exc:
            raise _Stop(EXIT_BAD_POLICY, f"{PROG} {self.command}: {exc}") from None
        except OSError as exc:
            raise _Stop(
                EXIT_FAILED, f"{PROG} {self.command}: cannot lock {exc.filename}: {exc.strerror}"
            ) from None
        try:
            for kind, path in self.paths.items():
                for stale in remove_stale_temps(path):
                    print(f"removed {stale}, left behind by an interrupted install")
                try:
                    self.old[kind] = read_current(path)
                except rbac.PolicyError as exc:
                    raise _Stop(
                        EXIT_BAD_POLICY,
                        f"{PROG} {self.command}: {exc}\n(the policy files must be trusted "
                        "before they can be changed)",
                    ) from None
            self.before, err = self._load(self.old)
            self.before_error = str(err) if err is not None else None
            self._authorize()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            self._lock.release()

    # -- policy helpers -----------------------------------------------------------------------
    def doc(self, kind: str, data: bytes | None = None):
        """The file as an editable document (an empty skeleton when it does not exist)."""
        import rbac
        from secured_virt.rolefiles.edit import EditError, PolicyDoc

        data = self.old[kind] if data is None else data
        try:
            if data is None:
                return PolicyDoc.skeleton(kind, self.paths[kind])
            return PolicyDoc(data, kind, self.paths[kind])
        except (rbac.PolicyError, EditError) as exc:
            raise _Stop(
                EXIT_BAD_POLICY,
                f"{PROG} {self.command}: cannot edit {self.paths[kind]}: {exc}\n"
                f"(fix it with '{PROG} edit {kind}')",
            ) from None

    def _load(self, data: dict[str, bytes | None]):
        """(RbacPolicy, None) or (None, PolicyError) for the pair of files ``data``."""
        import rbac
        from secured_virt.rolefiles.edit import PolicyDoc

        ua = data.get("ua")
        pa = data.get("pa")
        try:
            return (
                rbac.loads(
                    ua if ua is not None else PolicyDoc.skeleton("ua", "").original,
                    pa if pa is not None else PolicyDoc.skeleton("pa", "").original,
                    CATALOGUE.names,
                    ua_name=self.paths["ua"],
                    pa_name=self.paths["pa"],
                ),
                None,
            )
        except rbac.PolicyError as exc:
            return None, exc

    def _authorize(self) -> None:
        """Root may; a sudo caller needs rbac-admin on the host object in the policy in force."""
        if not self.delegated:
            return
        host = self.cfg.host_object
        if self.before is None:
            self._audit_decision(False, "the policy in force does not load: only root may edit")
            raise _Stop(
                EXIT_DENIED,
                f"{PROG} {self.command}: denied: the policy in force does not load, so only "
                "root (not a delegated admin) may change it",
            )
        d = self.before.decide(self.ident.user, CATALOGUE.get(RBAC_ADMIN).id, host)
        if not d.allowed:
            self._audit_decision(False, d.reason, check="rbac")
            raise _Stop(
                EXIT_DENIED,
                f"{PROG} {self.command}: denied: {self.ident.user} may not perform "
                f"{RBAC_ADMIN} on {host}: {d.reason}",
            )
        self._delegation_rule = d.rule

    # -- audit --------------------------------------------------------------------------------
    def _audit(self):
        from secured_virt.access.audit import AuditLog

        return AuditLog(self.cfg.audit_log, use_syslog=self.cfg.audit_syslog)

    def _audit_decision(self, allowed: bool, rule: str, *, check: str = "admin"):
        from secured_virt.access.audit import AuditError

        try:
            return self._audit().record_decision(
                uid=self.ident.uid,
                user=self.ident.user,
                op=RBAC_ADMIN,
                op_id=CATALOGUE.get(RBAC_ADMIN).id,
                vm=self.cfg.host_object,
                allowed=allowed,
                check=check,
                rule=rule,
                via=self.ident.via,
                pid=os.getpid(),
                tty=self.ident.tty,
            )
        except AuditError as exc:
            if not allowed:
                return None  # refusing anyway
            raise _Stop(
                EXIT_FAILED,
                f"{PROG} {self.command}: cannot write the audit log ({exc}); nothing was installed",
            ) from None

    # -- the common tail: validate, impact, confirm, install, reload ---------------------------
    def validate(self, new: dict[str, bytes | None]):
        return self._load(new)

    def finish(self, args, new: dict[str, bytes | None], summary: list[str]) -> int:
        """Validate ``new``, show the impact, ask, install, reload.  Returns the exit code."""
        changed = [k for k in ("ua", "pa") if new[k] != self.old[k]]
        if not changed:
            print("no changes" + (f": {'; '.join(summary)}" if summary else ""))
            return EXIT_OK
        after, err = self.validate(new)
        if err is not None:
            _err(
                f"{PROG} {self.command}: the result would not be a valid policy; "
                f"nothing was installed:\n{err}"
            )
            return EXIT_FAILED
        return self.confirm_and_install(args, new, changed, self.impact(after, new), summary)

    def impact(self, after, new: dict[str, bytes | None]):
        from secured_virt.rolefiles import impact as impact_mod
        from secured_virt.rolefiles.edit import roles_differing

        return impact_mod.compute(
            self.before,
            after,
            before_error=self.before_error,
            roles_changed=roles_differing(self.old["pa"], new["pa"]),
        )

    def confirm_and_install(self, args, new, changed, imp, summary) -> int:
        as_json = getattr(args, "json", False)
        if as_json:
            print(json.dumps({"changes": summary, "impact": imp.as_dict()}, indent=2))
        else:
            # before the answer the change is only proposed: "added role X" followed by
            # "not installed" read as if both had happened
            dry = getattr(args, "dry_run", False)
            pending = " (dry run)" if dry else "" if getattr(args, "yes", False) else " (proposed)"
            for line in summary:
                print(line + pending)
            sys.stdout.write(imp.render())
        if getattr(args, "dry_run", False):
            if not as_json:
                print("dry run: nothing was installed")
            return EXIT_OK
        if not getattr(args, "yes", False):
            answer = _ask("Install? [y/N] ")
            if answer not in ("y", "yes"):
                print("not installed")
                return EXIT_FAILED
        return self.install(new, changed, summary)

    def _order(self, new, changed) -> list[str]:
        """Files in an order whose in-between state is itself valid, when there is one."""
        if len(changed) < 2:
            return changed
        for first in ("ua", "pa"):
            mid = dict(self.old)
            mid[first] = new[first]
            if self._load(mid)[1] is None:
                return [first, "pa" if first == "ua" else "ua"]
        return ["ua", "pa"]

    def install(self, new, changed, summary) -> int:
        import rbac
        from secured_virt.fsutil import UnsafeFileError
        from secured_virt.rolefiles.install import ConcurrentChange, InstallError, install

        # the digest svirtd will report once it has loaded the new files
        digest = rbac.policy_digest(new["ua"] or b"", new["pa"] or b"")
        rule = f"{PROG} {self.command}: {'; '.join(summary) or 'edited'} -> policy {digest[:16]}"
        if self.delegated:
            rule += f" (delegated: {self._delegation_rule})"
        ref = self._audit_decision(True, rule)
        order = self._order(new, changed)
        try:
            lines = install(
                [(self.paths[k], new[k], self.old[k]) for k in order],
                state_dir=self.cfg.rolefile_state_dir,
            )
        except ConcurrentChange as exc:
            self._audit_outcome(ref, f"error:{exc}")
            raise _Stop(EXIT_FAILED, f"{PROG} {self.command}: {exc}") from None
        except UnsafeFileError as exc:
            self._audit_outcome(ref, f"error:{exc}")
            raise _Stop(
                EXIT_BAD_POLICY, f"{PROG} {self.command}: {exc}; nothing was installed"
            ) from None
        except (InstallError, OSError) as exc:
            self._audit_outcome(ref, f"error:{exc}")
            raise _Stop(EXIT_FAILED, f"{PROG} {self.command}: {exc}") from None
        self._audit_outcome(ref, "ok")
        for line in lines:
            print(line)
        return self.reload()

    def _audit_outcome(self, ref, outcome: str) -> None:
        from secured_virt.access.audit import AuditError

        if ref is None:
            return
        with contextlib.suppress(AuditError):
            self._audit().record_outcome(ref, outcome)

    def reload(self) -> int:
        """Tell a running svirtd to load the new files now (it also watches them)."""
        import stat

        from secured_virt import client

        sock = self.cfg.socket
        try:
            if not stat.S_ISSOCK(os.stat(sock).st_mode):
                return EXIT_OK
        except OSError:
            return EXIT_OK  # no daemon: it will read the files when it starts
        try:
            reply = client.admin_reload(sock, timeout=30)
        except client.ClientError as exc:
            print(f"svirtd not reached ({exc}); it will use the new policy when it starts")
            return EXIT_OK
        if reply.status == EXIT_OK:
            print("svirtd reloaded the policy")
            return EXIT_OK
        data = reply.data if isinstance(reply.data, dict) else {}
        if data.get("policy_errors") == [] and data.get("config_errors"):
            # UA/PA are in force; svirtd only says that other settings wait for a restart
            print("svirtd reloaded the policy")
            _err(f"{PROG}: note: {'; '.join(data['config_errors'])}")
            return EXIT_OK
        if reply.status == EXIT_DENIED and self.delegated:
            print(
                f"svirtd did not reload at {self.ident.user}'s request (that needs "
                "daemon-admin); it notices the changed files and loads them itself"
            )
            return EXIT_OK
        _err(
            f"{PROG} {self.command}: the files are installed, but svirtd did not load them "
            f"and keeps the previous policy: {reply.message}"
        )
        return EXIT_FAILED


def _run(args, command: str, body) -> int:
    """Open a session, run ``body(session)`` under the lock, map _Stop to its exit code."""
    try:
        with _Session(args, command) as s:
            return body(s)
    except _Stop as stop:
        if str(stop):
            (print if stop.code == EXIT_OK else _err)(str(stop))
        return stop.code


# -- scriptable edits -------------------------------------------------------------------------
def _edit_op(args, command: str, change) -> int:
    """``change(session, ua_doc, pa_doc) -> summary line``; then the common tail."""
    from secured_virt.rolefiles.edit import EditError

    def body(s: _Session) -> int:
        ua, pa = s.doc("ua"), s.doc("pa")
        try:
            summary = change(s, ua, pa)
        except EditError as exc:
            raise _Stop(EXIT_FAILED, f"{PROG} {command}: {exc}; nothing was changed") from None
        new = {
            "ua": ua.to_bytes() if s.old["ua"] is not None or _touched(ua) else None,
            "pa": pa.to_bytes() if s.old["pa"] is not None or _touched(pa) else None,
        }
        return s.finish(args, new, [summary])

    return _run(args, command, body)


def _touched(doc) -> bool:
    return doc.to_bytes() != doc.original


def _op_and_scope(args, s: _Session):
    from secured_virt.rolefiles.edit import parse_op, parse_scope

    try:
        op = parse_op(args.operation)
    except ValueError as exc:
        raise _Stop(EXIT_FAILED, f"{PROG} {args.command}: {exc}; nothing was changed") from None
    try:
        scope = parse_scope(args.scope, s.cfg.host_object)
    except ValueError as exc:
        raise _Stop(EXIT_USAGE, f"{PROG} {args.command}: {exc}") from None
    return op, scope


def cmd_assign(args) -> int:
    from secured_virt.rolefiles.edit import assign

    return _edit_op(
        args, "assign", lambda s, ua, pa: assign(ua, args.user, args.role, args.expires)
    )


def cmd_deassign(args) -> int:
    from secured_virt.rolefiles.edit import deassign

    return _edit_op(args, "deassign", lambda s, ua, pa: deassign(ua, args.user, args.role))


def cmd_grant(args) -> int:
    from secured_virt.rolefiles.edit import grant

    def change(s, ua, pa):
        op, scope = _op_and_scope(args, s)
        return grant(pa, args.role, op, scope)

    return _edit_op(args, "grant", change)


def cmd_revoke(args) -> int:
    from secured_virt.rolefiles.edit import EditError, revoke

    def change(s, ua, pa):
        op, scope = _op_and_scope(args, s)
        try:
            return revoke(pa, args.role, op, scope)
        except EditError as exc:
            raise EditError(f"{exc}{_revoke_hint(s, args.role, op)}") from None

    return _edit_op(args, "revoke", change)


def _revoke_hint(s: _Session, role: str, op) -> str:
    """Where the role's permission for ``op`` does come from, so root knows what to revoke."""
    from secured_virt.rolefiles.impact import scope_of

    pol = s.before
    if pol is None or role not in pol.roles or op.is_all:
        return ""
    rows = []
    for p in pol.role_permissions(role):
        if p.operation != op.id:
            continue
        where = "" if p.role == role else f" through inherited role {p.role}"
        for sc in scope_of(p.selector):
            rows.append(f"{sc.spec()} ({p.source}{where})")
    if not rows:
        return f" (role {role} does not have {op.text()} anywhere)"
    return f"; {op.text()} comes to role {role} from: " + ", ".join(sorted(set(rows)))


def cmd_add_role(args) -> int:
    from secured_virt.rolefiles.edit import add_role

    return _edit_op(
        args,
        "add-role",
        lambda s, ua, pa: add_role(pa, args.role, args.inherits or [], args.authenticate),
    )


def cmd_rm_role(args) -> int:
    from secured_virt.rolefiles.edit import rm_role

    return _edit_op(args, "rm-role", lambda s, ua, pa: rm_role(pa, ua, args.role, args.force))


# -- edit: the visudo-like session ------------------------------------------------------------
def cmd_edit(args) -> int:
    kind = args.which

    def body(s: _Session) -> int:
        from secured_virt.rolefiles.edit import PolicyDoc
        from secured_virt.rolefiles.editor import EditorError, editor_choice, run_editor

        try:
            editor, why = editor_choice(s.cfg)
        except EditorError as exc:
            raise _Stop(EXIT_BAD_POLICY, f"{PROG} edit: {exc}") from None
        _need_terminal(args, editor[0], why)
        print(f"{PROG} edit: editing {s.paths[kind]} with {editor[0]}: {why}")
        original = s.old[kind]
        start = original if original is not None else PolicyDoc.skeleton(kind, "").original
        run_as = s.run_as()
        # /tmp, not $TMPDIR: the caller's variable could name a directory they control (and
        # then swap our private directory); /tmp is sticky, so only we can rename ours
        tmpdir = tempfile.mkdtemp(prefix=f"svirt-admin-edit-{kind}-", dir=EDIT_TMP)
        keep = False
        try:
            tmp = os.path.join(tmpdir, os.path.basename(s.paths[kind]))
            _write_private(tmp, start, run_as)
            if run_as is not None:
                os.chown(tmpdir, run_as.pw_uid, run_as.pw_gid)
            while True:
                rc = run_editor(editor, tmp, run_as=run_as)
                if rc != 0:
                    raise _Stop(
                        EXIT_FAILED,
                        f"{PROG} edit: the editor exited with status {rc}; nothing was installed",
                    )
                edited = _read_back(tmp, run_as)
                if edited == start:
                    print(f"{s.paths[kind]}: no changes")
                    return EXIT_OK
                new = dict(s.old)
                new[kind] = edited
                after, err = s.validate(new)
                if err is None:
                    break
                _err(f"{s.paths[kind]} would not be a valid policy:\n{err}")
                if not _what_now():
                    print("nothing was installed")
                    return EXIT_FAILED
            imp = s.impact(after, new)
            summary = [f"edited {s.paths[kind]}"]
            try:
                return s.confirm_and_install(args, new, [kind], imp, summary)
            except _Stop:
                keep = True
                _err(f"your edited version is kept in {tmp}")
                raise
        finally:
            if not keep:
                shutil.rmtree(tmpdir, ignore_errors=True)

    try:
        return _run(args, "edit", body)
    except KeyboardInterrupt:
        _err("interrupted; nothing was installed")
        return EXIT_FAILED


def _need_terminal(args, editor: str, why: str) -> None:
    """An editor such as vim started without a terminal hangs or scribbles escape codes
    into a pipe; refuse with the way out instead.  ``--no-tty`` is for an editor that is a
    script (it needs none)."""
    if getattr(args, "no_tty", False):
        return
    missing = [n for n, fd in (("standard input", 0), ("standard output", 1)) if not _isatty(fd)]
    if missing:
        raise _Stop(
            EXIT_USAGE,
            f"{PROG} edit: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
            f"a terminal, and the editor ({editor}: {why}) needs one; nothing was started.  "
            f"Run {PROG} edit from a terminal (ssh -t for a remote one), change the files "
            f"with {PROG} assign/deassign/grant/revoke/add-role/rm-role, or pass --no-tty "
            "if the editor is a script that needs no terminal.",
        )


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _what_now() -> bool:
    """True to edit again, False to leave (also at the end of input)."""
    while True:
        answer = _ask("What now? (e)dit again, e(x)it without saving: ")
        if answer in ("e", "edit"):
            return True
        if answer in ("x", "exit", "q", "quit", ""):
            return False
        print("please answer e or x")


def _write_private(path: str, data: bytes, run_as) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if run_as is not None:
            os.fchown(fd, run_as.pw_uid, run_as.pw_gid)
        os.write(fd, data)
    finally:
        os.close(fd)


def _read_back(path: str, run_as) -> bytes:
    """The edited copy: a regular single-link file (never a link planted by a delegated user)."""
    import stat

    import rbac

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise _Stop(
            EXIT_FAILED, f"{PROG} edit: cannot read the edited copy {path}: {exc.strerror}"
        ) from None
    try:
        st = os.fstat(fd)
        owner = run_as.pw_uid if run_as is not None else os.geteuid()
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != owner:
            raise _Stop(EXIT_FAILED, f"{PROG} edit: {path} was replaced by something else")
        if st.st_size > rbac.MAX_POLICY_BYTES:
            raise _Stop(EXIT_FAILED, f"{PROG} edit: {path} is larger than the policy limit")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


# -- diff -------------------------------------------------------------------------------------
def cmd_diff(args) -> int:
    import rbac
    from secured_virt.rolefiles import impact as impact_mod

    pairs = _diff_files(args)
    if isinstance(pairs, int):
        return pairs
    (old_ua, old_pa), (new_ua, new_pa) = pairs
    data = {}
    try:
        for path in {old_ua, old_pa, new_ua, new_pa}:
            data[path] = rbac.read_trusted(path, max_size=rbac.MAX_POLICY_BYTES)
    except rbac.PolicyError as exc:
        _err(f"{PROG} diff: {exc}")
        return EXIT_BAD_POLICY

    def load(ua, pa):
        return rbac.loads(data[ua], data[pa], CATALOGUE.names, ua_name=ua, pa_name=pa)

    before, before_error = None, None
    try:
        before = load(old_ua, old_pa)
    except rbac.PolicyError as exc:
        before_error = str(exc)
    try:
        after = load(new_ua, new_pa)
    except rbac.PolicyError as exc:
        _err(f"{PROG} diff: the new policy is not valid:\n{exc}")
        return EXIT_FAILED
    from secured_virt.rolefiles.edit import roles_differing

    hint = roles_differing(data[old_pa], data[new_pa])
    imp = impact_mod.compute(before, after, before_error=before_error, roles_changed=hint)
    if args.json:
        out = {
            "old": {"ua": old_ua, "pa": old_pa},
            "new": {"ua": new_ua, "pa": new_pa},
            **imp.as_dict(),
        }
        print(json.dumps(out, indent=2))
    else:
        print(f"--- {old_ua} + {old_pa}")
        print(f"+++ {new_ua} + {new_pa}")
        sys.stdout.write(imp.render())
    return EXIT_OK


def _diff_files(args):
    if args.files and (args.ua or args.pa):
        _err(f"{PROG} diff: give either four files or --ua/--pa, not both")
        return EXIT_USAGE
    if args.files:
        if len(args.files) != 4:
            _err(f"{PROG} diff: expected OLD_UA OLD_PA NEW_UA NEW_PA (got {len(args.files)})")
            return EXIT_USAGE
        a, b, c, d = args.files
        return (a, b), (c, d)
    if not (args.ua or args.pa):
        _err(f"{PROG} diff: give OLD_UA OLD_PA NEW_UA NEW_PA, or --ua OLD NEW and/or --pa OLD NEW")
        return EXIT_USAGE
    from secured_virt.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, caller_uid=invoking_uid())
    except ConfigError as exc:
        _err(f"{PROG}: {exc}")
        return EXIT_BAD_POLICY
    ua = args.ua or (cfg.ua, cfg.ua)
    pa = args.pa or (cfg.pa, cfg.pa)
    return (ua[0], pa[0]), (ua[1], pa[1])


# -- names for bash completion (hidden) ---------------------------------------------------------
def cmd_complete_names(args) -> int:
    """Print user or role names from the configured files; silent on any problem."""
    import rbac
    from secured_virt.config import load_config
    from secured_virt.rolefiles.edit import PolicyDoc

    try:
        cfg = load_config(args.config, caller_uid=invoking_uid())
        kind = "ua" if args.what == "users" else "pa"
        path = cfg.ua if kind == "ua" else cfg.pa
        doc = PolicyDoc(rbac.read_trusted(path, max_size=rbac.MAX_POLICY_BYTES), kind, path)
        tag = "User" if kind == "ua" else "Role"
        for el in doc.elements(tag=tag):
            if el.get("name"):
                print(el.get("name"))
    except Exception:  # noqa: S110 - completion must never print errors into the shell line
        pass
    return EXIT_OK


# -- registration -----------------------------------------------------------------------------
SCOPE_HELP = "VM scope: vm:NAME, pattern:GLOB, label:LABEL, all, owned, or host (the host object)"


def _change_options(sp) -> None:
    sp.add_argument(
        "-y", "--yes", action="store_true", help="install without asking (after the impact)"
    )
    sp.add_argument(
        "-n", "--dry-run", action="store_true", help="show the impact only; install nothing"
    )
    sp.add_argument("--json", action="store_true", help="print the change and its impact as JSON")


def _checked(func):
    """--json needs --yes or --dry-run: a JSON document cannot be followed by a prompt."""

    def run(args) -> int:
        if getattr(args, "json", False) and not (args.yes or args.dry_run):
            _err(f"{PROG} {args.command}: --json needs --yes or --dry-run")
            return EXIT_USAGE
        return func(args)

    run.__doc__ = func.__doc__
    return run


def register(sub, add, files) -> None:
    """Add edit, assign, deassign, grant, revoke, add-role, rm-role and diff to svirt-admin."""
    sp = add(
        "edit",
        cmd_edit,
        "edit the UA or PA file like visudo: lock, private copy, your editor, validation of "
        "the whole policy, the impact, then an atomic install",
        "svirt-admin edit pa",
    )
    sp.add_argument("which", choices=("ua", "pa"), help="which file to edit")
    sp.add_argument(
        "-y", "--yes", action="store_true", help="install a valid result without asking"
    )
    sp.add_argument(
        "--no-tty",
        action="store_true",
        help="start the editor without a terminal (an editor that is a script); otherwise "
        "edit refuses when standard input or output is not a terminal",
    )

    sp = add(
        "assign",
        _checked(cmd_assign),
        "assign ROLE to USER (or change the assignment's expiry)",
        "svirt-admin assign alice WebTeam --expires 2027-01-31",
    )
    sp.add_argument("user", metavar="USER")
    sp.add_argument("role", metavar="ROLE")
    sp.add_argument(
        "--expires",
        metavar="DATE",
        help="last day (2027-01-31, through its end, UTC) or an ISO date-time with a zone; "
        "without it the assignment does not expire",
    )
    _change_options(sp)

    sp = add(
        "deassign",
        _checked(cmd_deassign),
        "take ROLE away from USER",
        "svirt-admin deassign alice WebTeam",
    )
    sp.add_argument("user", metavar="USER")
    sp.add_argument("role", metavar="ROLE")
    _change_options(sp)

    grant_help = "let ROLE perform OP on the VMs of SCOPE"
    revoke_help = "take OP on SCOPE away from ROLE's own grants (OP * removes the scope)"
    for name, func, verb, example in (
        ("grant", cmd_grant, grant_help, "grant WebTeam start pattern:web-*"),
        ("revoke", cmd_revoke, revoke_help, "revoke WebTeam destroy vm:alice-web"),
    ):
        sp = add(name, _checked(func), verb, f"svirt-admin {example}")
        sp.add_argument("role", metavar="ROLE")
        sp.add_argument(
            "operation",
            metavar="OP",
            help="operation name or id (svirt-admin operations), or * for every operation; "
            "the file keeps the form given",
        )
        sp.add_argument("scope", metavar="SCOPE", help=SCOPE_HELP)
        _change_options(sp)

    sp = add(
        "add-role",
        _checked(cmd_add_role),
        "define a new role (with no permissions of its own yet)",
        "svirt-admin add-role WebAdmin --inherits WebTeam --authenticate",
    )
    sp.add_argument("role", metavar="ROLE")
    sp.add_argument(
        "--inherits",
        metavar="R",
        action="append",
        help="inherit every permission of role R (repeatable)",
    )
    sp.add_argument(
        "--authenticate",
        action="store_true",
        help="operations granted through this role need the caller's password (PAM)",
    )
    _change_options(sp)

    sp = add(
        "rm-role",
        _checked(cmd_rm_role),
        "remove a role; refused while users hold it, roles inherit it or separation sets "
        "name it, unless --force",
        "svirt-admin rm-role OldTeam --force",
    )
    sp.add_argument("role", metavar="ROLE")
    sp.add_argument(
        "--force",
        action="store_true",
        help="also remove its assignments, inheritance and separation-set membership",
    )
    _change_options(sp)

    sp = add(
        "diff",
        cmd_diff,
        "the impact of going from one UA/PA pair to another: who gains or loses what, where",
        "svirt-admin diff --pa /etc/secured-virt/pa.xml /root/pa.new.xml",
    )
    sp.add_argument("files", nargs="*", metavar="FILE", help="OLD_UA OLD_PA NEW_UA NEW_PA")
    sp.add_argument(
        "--ua", nargs=2, metavar=("OLD", "NEW"), help="compare two UA files (PA: the configured)"
    )
    sp.add_argument(
        "--pa", nargs=2, metavar=("OLD", "NEW"), help="compare two PA files (UA: the configured)"
    )
    sp.add_argument("--json", action="store_true", help="print the impact as JSON")

    # hidden helper for bash completion: no help= keeps it out of the command list
    sp = sub.add_parser("_complete-names", add_help=False)
    sp.add_argument("what", choices=("users", "roles"))
    sp.set_defaults(func=cmd_complete_names)
