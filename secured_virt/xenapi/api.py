"""The Xen-API method table: each call checked for arity, then mapped to svirtd.

Nothing is decided here.  ``session.login_with_password`` becomes ``session_login`` (PAM in
svirtd); every other call carries the session ref (svirtd's token) first and becomes one or a
few ``session_request`` frames running the Service's own commands as the token's user:

=============================  ===============================================================
Xen-API                        Service command (as svirsh names it)
=============================  ===============================================================
VM.get_all / get_all_records   ``list --all`` (the caller's own filter: what svirsh list shows)
VM.get_record / get_by_name…   the same listing
VM.start / resume              ``start`` (resume: a managed save image is restored by start)
VM.clean_shutdown / hard_…     ``shutdown`` / ``destroy``
VM.clean_reboot                ``reboot``
VM.pause / unpause             ``suspend`` / ``resume`` (virsh's words for pause)
VM.suspend                     ``managedsave``
VM.get/set_security_label      ``getlabel`` / ``setlabel`` (dormant) or ``relabel`` (running)
VBD.get/set_security_label     ``getlabel --resource`` / ``setlabel --resource``
VIF.get/set_security_label     ``getlabel --vif`` / ``setlabel --vif``
host.get_all / get_record      ``nodeinfo``
XSPolicy.*                     ``policy-show``, ``policy-load``, ``policy-reset``,
                               ``policy-rm-boot``, ``resources``, ``setlabel --resource``,
                               ``getlabel --resource``, ``dry-run --label`` (can_run)
ACMPolicy.*                    ``policy-show`` (header, xml), ``policy-map``, ``policy-binary``
=============================  ===============================================================

Refs: the session ref is the token itself; VM refs are UUIDs, resolved to names through the
caller's own listing (kept 2 s per session), so a ref can only ever reach a VM the caller may
see, and svirtd's gate decides on that VM as it would for svirsh.  VBD refs are resource names
(``file:/path``, ``phy:/dev/...``), VIF refs ``<vm uuid>/<index>``.

Errors: ``SESSION_INVALID [ref]`` for a token svirtd does not know; ``PERMISSION_DENIED
[reason, check]`` with the gate's own reason; ``SECURITY_ERROR [xserr, message]`` where the
sHype layer names an XSERR code; ``HANDLE_INVALID``, ``VM_BAD_POWER_STATE``,
``MESSAGE_METHOD_UNKNOWN``, ``MESSAGE_PARAMETER_COUNT_MISMATCH`` as Xen does.
"""

from __future__ import annotations

import operator
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any
from xmlrpc.client import escape

from policy.errors import Xserr
from secured_virt.netfront.link import Link, LinkError
from secured_virt.requests import EXIT_DENIED, EXIT_OK, EXIT_USAGE, Reply

from . import records as R
from .xmlrpc import Streamed, encode, failure, success

#: how long a session's listing answers for VM.get_all-style calls; single-VM calls use it
#: only to find a name and then ask svirtd about that VM (checked by UUID)
VM_CACHE_SECONDS = 2.0
#: encoded VM records kept (a few per VM: its states); beyond it the table starts again
ENCODED_KEEP = 50_000
#: rows per part of a streamed get_all_records: small enough that the client starts parsing
#: early, large enough that a part's frame and HTTP chunk cost little
STREAM_ROWS = 100
MAX_TOKEN_CHARS = 256  # svirtd's limit (daemon.websessions)


_ROW_ITEMS = operator.itemgetter(*R.VM_ROW_FIELDS)


def _row_key(row: dict[str, Any]) -> tuple:
    """The row's ``VM_ROW_FIELDS``, what its record depends on (None for one it lacks:
    ``list --all --label`` has them all, so that is the fast path)."""
    try:
        return _ROW_ITEMS(row)
    except KeyError:
        return tuple(row.get(f) for f in R.VM_ROW_FIELDS)


_XSERR_IN_TEXT = re.compile(r"\[(?:XSERR_)?([A-Z_]+)\]")


class Failure(Exception):
    """A Xen-API failure to answer with: ``ErrorDescription`` = [code, *params]."""

    def __init__(self, code: str, *params: Any):
        super().__init__(code)
        self.description = (code, *params)


class Call:
    """One call: the token (session ref) and the client's address."""

    __slots__ = ("peer", "token")

    def __init__(self, token: str, peer: str | None):
        self.token, self.peer = token, peer


class XenApi:
    def __init__(self, link: Link):
        self.link = link
        #: per session: (when, its last listing's rows, those rows by UUID)
        self._vms: dict[str, tuple[float, list[dict[str, Any]], dict[str, dict]]] = {}
        #: each VM's ``<member>`` of get_all_records (its UUID and encoded record) by (host
        #: ref, the row's fields): what a row looks like changes rarely, and the same row
        #: gives the same record to every session that may see it
        self._encoded: dict[tuple, bytes] = {}
        self._host: str | None = None
        m = self.methods = {}

        def add(name: str, fn: Callable[..., Awaitable[Any]], n: int, most: int | None = None):
            m[name] = (fn, n, n if most is None else most)

        add("session.logout", self.logout, 0)
        add("VM.get_all", self.vm_get_all, 0)
        add("VM.get_all_records", self.vm_get_all_records, 0)
        add("VM.get_record", self.vm_get_record, 1)
        add("VM.get_by_name_label", self.vm_get_by_name_label, 1)
        add("VM.get_name_label", self.vm_field("name_label"), 1)
        add("VM.get_power_state", self.vm_field("power_state"), 1)
        add("VM.get_uuid", self.vm_field("uuid"), 1)
        add("VM.start", self.vm_start, 1, 3)
        add("VM.resume", self.vm_start, 1, 3)
        for name, command in (
            ("clean_shutdown", "shutdown"),
            ("hard_shutdown", "destroy"),
            ("clean_reboot", "reboot"),
            ("pause", "suspend"),
            ("unpause", "resume"),
            ("suspend", "managedsave"),
        ):
            add(f"VM.{name}", self.vm_action(command), 1)
        add("VM.get_security_label", self.vm_get_label, 1)
        add("VM.set_security_label", self.vm_set_label, 3)
        add("VBD.get_security_label", self.res_get_label, 1)
        add("VBD.set_security_label", self.res_set_label, 3)
        add("VIF.get_security_label", self.vif_get_label, 1)
        add("VIF.set_security_label", self.vif_set_label, 3)
        add("host.get_all", self.host_get_all, 0)
        add("host.get_record", self.host_get_record, 1)
        add("XSPolicy.get_xstype", self.xs_get_xstype, 0)
        add("XSPolicy.get_xspolicy", self.xs_get_xspolicy, 0)
        add("XSPolicy.set_xspolicy", self.xs_set_xspolicy, 4)
        add("XSPolicy.reset_xspolicy", self.xs_reset_xspolicy, 1)
        add("XSPolicy.rm_xsbootpolicy", self.xs_rm_bootpolicy, 0)
        add("XSPolicy.get_labeled_resources", self.xs_labeled_resources, 0)
        add("XSPolicy.set_resource_label", self.res_set_label, 3)
        add("XSPolicy.get_resource_label", self.res_get_label, 1)
        add("XSPolicy.activate_xspolicy", self.xs_activate, 2)
        add("XSPolicy.can_run", self.xs_can_run, 1)
        add("XSPolicy.get_all", self.xs_get_all, 0)
        add("XSPolicy.get_record", self.xs_get_record, 1)
        add("ACMPolicy.get_header", self.acm_get_header, 1)
        add("ACMPolicy.get_xml", self.acm_show_field("xml"), 1)
        add("ACMPolicy.get_map", self.acm_simple("policy-map", "map"), 1)
        add("ACMPolicy.get_binary", self.acm_simple("policy-binary", "binary_b64"), 1)
        add("ACMPolicy.get_enforced_binary", self.acm_simple("policy-binary", "binary_b64"), 0)

    # -- dispatch -------------------------------------------------------------------------------
    async def dispatch(self, method: str, params: tuple, peer: str | None) -> dict[str, Any]:
        """The result struct of one call; never raises for anything the client did."""
        try:
            if method == "session.login_with_password":
                return await self.login(params, peer)
            entry = self.methods.get(method)
            if entry is None:
                return failure("MESSAGE_METHOD_UNKNOWN", method)
            fn, least, most = entry
            if not least + 1 <= len(params) <= most + 1:
                return failure("MESSAGE_PARAMETER_COUNT_MISMATCH", method, least + 1, len(params))
            token = params[0]
            if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
                # svirtd would refuse the frame; nothing about anyone is decided here
                return failure("SESSION_INVALID", str(token)[:MAX_TOKEN_CHARS])
            for p in params[1:]:
                _check_param(p)
            return success(await fn(Call(token, peer), *params[1:]))
        except Failure as exc:
            return failure(*exc.description)
        except LinkError as exc:
            return failure("INTERNAL_ERROR", str(exc))

    async def login(self, params: tuple, peer: str | None) -> dict[str, Any]:
        # xend 3.x takes (user, password); xapi adds version and originator: accept 2 to 4
        if not 2 <= len(params) <= 4:
            return failure(
                "MESSAGE_PARAMETER_COUNT_MISMATCH", "session.login_with_password", 2, len(params)
            )
        user, password = params[0], params[1]
        if not isinstance(user, str) or not isinstance(password, str):
            return failure("SESSION_AUTHENTICATION_FAILED", str(user), "give a user and password")
        if len(user) > 256 or len(password) > 4096:
            return failure("SESSION_AUTHENTICATION_FAILED", user[:64], "user or password too long")
        reply = await self.link.call(
            {"type": "session_login", "user": user, "password": password, "peer": peer}
        )
        if reply.status == EXIT_OK:
            return success(reply.data["token"])
        return failure("SESSION_AUTHENTICATION_FAILED", user, reply.message)

    async def logout(self, call: Call) -> str:
        reply = await self.link.call(
            {"type": "session_logout", "token": call.token, "peer": call.peer}
        )
        self._vms.pop(call.token, None)
        self._ok(reply, call)
        return ""

    # -- talking to svirtd ------------------------------------------------------------------------
    async def run(self, call: Call, command: str, **args) -> Reply:
        return await self.link.call(self._request(call, command, **args))

    @staticmethod
    def _request(call: Call, command: str, **args) -> dict[str, Any]:
        return {
            "type": "session_request",
            "token": call.token,
            "request": {"command": command, "args": args},
            "peer": call.peer,
        }

    async def ok(self, call: Call, command: str, **args) -> Any:
        """The command's data, or the Failure that says why not."""
        return self._ok(await self.run(call, command, **args), call)

    def _ok(self, reply: Reply, call: Call) -> Any:
        if reply.status == EXIT_OK:
            return reply.data
        raise self._failure(reply, call)

    @staticmethod
    def _failure(reply: Reply, call: Call) -> Failure:
        if reply.check == "session":
            return Failure("SESSION_INVALID", call.token)
        if reply.status == EXIT_DENIED:
            return Failure("PERMISSION_DENIED", reply.message, reply.check or "")
        code = _xserr(reply.message)
        if code is not None:
            return Failure("SECURITY_ERROR", int(code), reply.message)
        if reply.status == EXIT_USAGE:
            return Failure("INVALID_VALUE", reply.message)
        return Failure("INTERNAL_ERROR", reply.message)

    # -- VMs ------------------------------------------------------------------------------------
    async def _rows(self, call: Call, *, fresh: bool = False) -> list[dict[str, Any]]:
        now = time.monotonic()
        hit = self._vms.get(call.token)
        if hit is not None and not fresh and now - hit[0] < VM_CACHE_SECONDS:
            return hit[1]
        data = await self.ok(call, "list", all=True, label=True, managed_save=True)
        return self._remember(call, list(data.get("domains") or []))

    def _remember(self, call: Call, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The session's last listing, for the per-VM calls that follow (``_info``)."""
        now = time.monotonic()
        if len(self._vms) > 10_000:  # sessions that went away without logging out
            self._vms = {k: v for k, v in self._vms.items() if now - v[0] < VM_CACHE_SECONDS}
        self._vms[call.token] = (now, rows, {r.get("uuid"): r for r in rows})
        return rows

    async def _info(self, call: Call, ref) -> dict[str, Any]:
        """One VM's row, cheaply: the name from the caller's last listing (any age), then
        ``dominfo`` on that name, accepted only if it still has this UUID (a VM renamed or
        replaced since is looked up afresh).  Without dominfo rights: the listing's row."""
        ref = _ref(ref)
        hit = self._vms.get(call.token)
        listed = hit[2].get(ref) if hit else None  # a dict: no scan of 1,000 rows per call
        name = listed["name"] if listed else None
        if name is None:
            return await self._row(call, ref)
        reply = await self.run(call, "dominfo", domain=name)
        if reply.status == EXIT_OK and reply.data.get("uuid") == ref:
            row = dict(reply.data)
            sec = row.get("security") or {}
            row["acm_label"] = sec.get("display") if isinstance(sec, dict) else None
            if row.get("state") == "shut off" and row.get("managed_save"):
                row["state"] = "saved"
            return row
        if reply.check == "session":
            raise self._failure(reply, call)
        return await self._row(call, ref, fresh=True)

    async def _row(self, call: Call, ref, *, fresh: bool = False) -> dict[str, Any]:
        ref = _ref(ref)
        for attempt_fresh in (True,) if fresh else (False, True):
            await self._rows(call, fresh=attempt_fresh)
            row = self._vms[call.token][2].get(ref)
            if row is not None:
                return row
            if self._vms.get(call.token, (0,))[0] >= time.monotonic() - 0.001:
                break  # the listing was just fetched: no need to ask again
        raise Failure("HANDLE_INVALID", "VM", ref)

    async def _host_ref(self, call: Call) -> str:
        """The one host's ref: from this machine's name (svirtd serves the same host), so
        listing VMs needs no host query the caller may not be allowed."""
        if self._host is None:
            self._host = R.host_uuid(socket.gethostname())
        return self._host

    _host_ref_quiet = _host_ref

    async def vm_get_all(self, call: Call) -> list[str]:
        return [r["uuid"] for r in await self._rows(call, fresh=True)]

    async def vm_get_all_records(self, call: Call) -> Streamed:
        """The caller's VMs (a fresh listing), sent while svirtd still lists them: svirtd
        streams the rows (``list`` with ``stream``) once its decision is on disk, and each
        part goes to the client at once (``Streamed``), so the client parses the first
        records while the last are made.  Each record is encoded once for all sessions and
        kept while its row stays the same (``_member``)."""
        return Streamed(lambda emit: self._all_records(call, emit))

    async def _all_records(self, call: Call, emit) -> list[bytes]:
        """``emit`` each streamed part's members as they come; return what is left of the
        value (all of it when nothing was streamed).  Raises Failure before any part was
        emitted when svirtd refuses (the decision comes before any row)."""
        host = await self._host_ref_quiet(call)
        seen: list[dict[str, Any]] = []
        head = [b"<value><struct>"]

        async def part(rows: list) -> None:
            members = [*head, *(self._member(host, r) for r in rows)]
            head.clear()
            seen.extend(rows)
            await emit(members)

        reply = await self.link.call(
            self._request(call, "list", all=True, label=True, managed_save=True,
                          stream=STREAM_ROWS),
            rows=part,
        )  # fmt: skip
        rest = list(self._ok(reply, call).get("domains") or [])
        seen.extend(rest)
        self._remember(call, seen)
        return [*head, *(self._member(host, r) for r in rest), b"</struct></value>"]

    def _member(self, host: str, row: dict[str, Any]) -> bytes:
        """A VM's ``<member>`` of get_all_records (its UUID and encoded record), kept by (host
        ref, the row's fields) for every session: a row rarely changes."""
        kept = self._encoded
        key = (host, _row_key(row))
        member = kept.get(key)
        if member is None:
            if len(kept) >= ENCODED_KEEP:
                kept.clear()
            member = kept[key] = (
                f"<member><name>{escape(str(row['uuid']))}</name>"
                f"{encode(R.vm_record(row, host)).xml}</member>"
            ).encode()
        return member

    async def vm_get_record(self, call: Call, ref) -> dict[str, Any]:
        row = await self._info(call, ref)
        return R.vm_record(row, await self._host_ref_quiet(call))

    async def vm_get_by_name_label(self, call: Call, name) -> list[str]:
        return [r["uuid"] for r in await self._rows(call, fresh=True) if r.get("name") == name]

    def vm_field(self, field: str):
        async def get(call: Call, ref):
            row = await self._info(call, ref)
            return R.vm_record(row, "")[field]

        return get

    async def vm_start(self, call: Call, ref, start_paused=False, force=False) -> str:
        return await self._act(
            call, ref, "start", ("Halted", "Suspended"), paused=bool(start_paused)
        )

    def vm_action(self, command: str):
        expected = {
            "shutdown": ("Running",),
            "destroy": ("Running", "Paused"),
            "reboot": ("Running",),
            "suspend": ("Running",),
            "resume": ("Paused",),
            "managedsave": ("Running", "Paused"),
        }[command]

        async def act(call: Call, ref) -> str:
            return await self._act(call, ref, command, expected)

        return act

    async def _act(self, call: Call, ref, command: str, expected: tuple[str, ...], **args) -> str:
        row = await self._info(call, ref)
        reply = await self.run(call, command, domain=row["name"], **args)
        if reply.status == EXIT_OK:
            return ""
        if reply.status not in (EXIT_DENIED,) and reply.check != "session":
            now = R.power_state(await self._info(call, ref))
            if now not in expected:
                raise Failure("VM_BAD_POWER_STATE", row["uuid"], expected[0], now)
        raise self._failure(reply, call)

    # -- labels ---------------------------------------------------------------------------------
    async def vm_get_label(self, call: Call, ref) -> str:
        row = await self._row(call, ref)
        data = await self.ok(call, "getlabel", domain=row["name"])
        return data.get("display") or ""

    async def vm_set_label(self, call: Call, ref, label, old_label) -> int:
        row = await self._info(call, ref)
        label, old = _text(label, "security_label"), _text(old_label, "old_label")
        current = (await self.ok(call, "getlabel", domain=row["name"])).get("display") or ""
        _same_label(current, old)
        running = R.power_state(row) in ("Running", "Paused")
        await self.ok(call, "relabel" if running else "setlabel", domain=row["name"], label=label)
        if not running:
            return 0
        after = await self.ok(call, "getlabel", domain=row["name"])
        return int(after.get("ssidref") or 0)

    async def res_get_label(self, call: Call, res) -> str:
        data = await self.ok(call, "getlabel", domain=_text(res, "resource"), resource=True)
        return data.get("display") or ""

    async def res_set_label(self, call: Call, res, label, old_label) -> str:
        res = _text(res, "resource")
        label, old = _text(label, "label"), _text(old_label, "old_label")
        current = await self.ok(call, "getlabel", domain=res, resource=True)
        _same_label(current.get("display") or "", old)
        await self.ok(call, "setlabel", domain=res, label=label, resource=True)
        return ""

    async def _vif(self, call: Call, ref) -> tuple[str, int]:
        vm, sep, index = _text(ref, "VIF").rpartition("/")
        if not sep or not index.isdigit():
            raise Failure("HANDLE_INVALID", "VIF", ref)
        row = await self._row(call, vm)
        return row["name"], int(index)

    async def vif_get_label(self, call: Call, ref) -> str:
        name, index = await self._vif(call, ref)
        return (await self.ok(call, "getlabel", domain=name, vif=index)).get("display") or ""

    async def vif_set_label(self, call: Call, ref, label, old_label) -> str:
        name, index = await self._vif(call, ref)
        current = await self.ok(call, "getlabel", domain=name, vif=index)
        _same_label(current.get("display") or "", _text(old_label, "old_label"))
        await self.ok(call, "setlabel", domain=name, vif=index, label=_text(label, "label"))
        return ""

    # -- host -----------------------------------------------------------------------------------
    async def host_get_all(self, call: Call) -> list[str]:
        await self._session(call)
        return [await self._host_ref(call)]

    async def host_get_record(self, call: Call, ref) -> dict[str, Any]:
        mine = await self._host_ref(call)
        if _ref(ref) != mine:
            await self._session(call)
            raise Failure("HANDLE_INVALID", "host", ref)
        info = await self.ok(call, "nodeinfo")
        return R.host_record(info, mine)

    async def _session(self, call: Call) -> dict[str, Any]:
        """Check the token for calls that ask svirtd nothing else."""
        reply = await self.link.call(
            {"type": "session_info", "token": call.token, "peer": call.peer}
        )
        return self._ok(reply, call)

    # -- XSPolicy / ACMPolicy ---------------------------------------------------------------------
    async def _show(self, call: Call, xml: bool = False) -> dict[str, Any] | None:
        """policy-show's data, or None when sHype/ACM is off on this host."""
        reply = await self.run(call, "policy-show", xml=xml)
        if reply.status == EXIT_OK:
            return reply.data
        if reply.status == 1 and "not enabled" in reply.message:
            return None
        raise self._failure(reply, call)

    async def _need_policy(self, call: Call, ref=None, xml: bool = False) -> dict[str, Any]:
        show = await self._show(call, xml)
        if show is None:
            raise Failure("SECURITY_ERROR", int(Xserr.POLICY_NOT_LOADED), "sHype/ACM is off")
        if ref is not None and _ref(ref) != R.policy_uuid(show["policy"]):
            raise Failure("HANDLE_INVALID", "XSPolicy", ref)
        return show

    async def xs_get_xstype(self, call: Call) -> int:
        return 0 if await self._show(call) is None else R.XS_POLICY_ACM

    async def xs_get_xspolicy(self, call: Call) -> dict[str, Any]:
        show = await self._show(call, xml=True)
        if show is None:
            return R.policystate(None, xserr=int(Xserr.POLICY_NOT_LOADED))
        return R.policystate(show)

    async def xs_set_xspolicy(self, call: Call, xstype, repr_, flags, overwrite) -> dict[str, Any]:
        if xstype != R.XS_POLICY_ACM:
            raise Failure("SECURITY_ERROR", int(Xserr.WRONG_POLICY_TYPE), "only ACM (1) is known")
        xml = _text(repr_, "repr")
        if not isinstance(flags, int) or isinstance(flags, bool):
            raise Failure("INVALID_VALUE", "flags", str(flags))
        reply = await self.run(
            call,
            "policy-load",
            xml=xml,
            boot=bool(flags & R.XS_INST_BOOT),
            overwrite=bool(overwrite),
        )
        if reply.status != EXIT_OK:
            failure_ = self._failure(reply, call)
            if failure_.description[0] == "SECURITY_ERROR":  # xend answers with the state
                show = await self._show(call, xml=True)
                return R.policystate(show, xserr=failure_.description[1], errors=reply.message)
            if reply.status == 1:
                show = await self._show(call, xml=True)
                return R.policystate(
                    show, xserr=int(Xserr.POLICY_LOAD_FAILED), errors=reply.message
                )
            raise failure_
        return R.policystate(await self._show(call, xml=True))

    async def xs_reset_xspolicy(self, call: Call, xstype) -> dict[str, Any]:
        await self.ok(call, "policy-reset")
        return R.policystate(await self._show(call, xml=True))

    async def xs_rm_bootpolicy(self, call: Call) -> str:
        await self.ok(call, "policy-rm-boot")
        return ""

    async def xs_labeled_resources(self, call: Call) -> dict[str, str]:
        data = await self.ok(call, "resources")
        return {
            r["resource"]: f"{r['type']}:{r['policy']}:{r['label']}"
            for r in data.get("resources") or []
        }

    async def xs_activate(self, call: Call, ref, flags) -> int:
        show = await self._need_policy(call, ref)
        have = int(show.get("flags") or 0)
        want = int(flags) if isinstance(flags, int) else -1
        if want < 0 or want & ~have:
            raise Failure(
                "SECURITY_ERROR",
                int(Xserr.POLICY_LOAD_FAILED),
                f"the policy is active with flags {have}; to change them, install it again "
                "with XSPolicy.set_xspolicy (XS_INST_BOOT to make it the boot policy)",
            )
        return have

    async def xs_can_run(self, call: Call, label) -> int:
        data = await self.ok(call, "dry-run", label=_text(label, "security_label"))
        if data.get("can_run"):
            return 0
        code = int(data.get("xserr") or Xserr.VM_NOT_AUTHORIZED)
        raise Failure("SECURITY_ERROR", code, str(data.get("reason") or ""))

    async def xs_get_all(self, call: Call) -> list[str]:
        show = await self._show(call)
        return [] if show is None else [R.policy_uuid(show["policy"])]

    async def xs_get_record(self, call: Call, ref) -> dict[str, Any]:
        show = await self._need_policy(call, ref, xml=True)
        state = R.policystate(show)
        return {"uuid": state["xs_ref"], "repr": state["repr"], "type": 1, "flags": state["flags"]}

    async def acm_get_header(self, call: Call, ref) -> dict[str, Any]:
        return dict((await self._need_policy(call, ref)).get("header") or {})

    def acm_show_field(self, field: str):
        async def get(call: Call, ref) -> Any:
            return (await self._need_policy(call, ref, xml=True)).get(field) or ""

        return get

    def acm_simple(self, command: str, field: str):
        async def get(call: Call, ref=None) -> Any:
            if ref is not None:
                await self._need_policy(call, ref)
            return (await self.ok(call, command)).get(field) or ""

        return get


def _ref(ref) -> str:
    if not isinstance(ref, str):
        raise Failure("HANDLE_INVALID", "ref", str(ref))
    return ref.removeprefix("OpaqueRef:")


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise Failure("INVALID_VALUE", what, str(value)[:100])
    return value


def _label_name(text: str) -> str:
    """The label name of ``ACM:<policy>:<label>`` (or a bare name); "" for none."""
    text = (text or "").strip()
    return text.rpartition(":")[2] if text else ""


def _same_label(current: str, old: str) -> None:
    """Xen's compare-and-swap: ``old_label`` must be the label the object has now."""
    if _label_name(current) in ("", "__UNLABELED__") and _label_name(old) in ("", "__UNLABELED__"):
        return
    if _label_name(current) != _label_name(old) or (
        old.count(":") == 2 and current.count(":") == 2 and old != current
    ):
        raise Failure(
            "SECURITY_ERROR",
            int(Xserr.BAD_LABEL),
            f"old_label {old!r} is not the current label {current!r}",
        )


def _xserr(message: str) -> int | None:
    for name in _XSERR_IN_TEXT.findall(message or ""):
        try:
            return int(Xserr[name])
        except KeyError:
            continue
    return None


def _check_param(value) -> None:
    """Parameters are strings, numbers, booleans, and small lists/structs of them."""
    if isinstance(value, str) and len(value) > 4 * 1024 * 1024:
        raise Failure("INVALID_VALUE", "parameter", "too long")
