"""The XSM management API of a host (seed 000, Xen-API ``XSPolicy``/``ACMPolicy`` semantics).

Why this shape: ``svirt-admin policy ...`` and the daemon need one object that owns the active
policy, the installed policies, the boot marker and the labels, persists them crash-safely, and
answers in plain data.  Policy-changing calls (``set_policy``, ``reset_policy`` and every edit
through :class:`~policy.xsm.editor.XsmPolicy`) return a :class:`~policy.xsm.records.PolicyState`
record and succeed or fail whole; label calls return plain values and raise
:class:`~policy.errors.XsmError`.

State directory layout (all files written atomically)::

    policies/<a>/<b>-security_policy.xml   the policy a.b as installed (exact bytes)
    policies/<a>/<b>.map, <b>.bin           its map and binary (as Xen's tools wrote them)
    boot_policy                             JSON {policy, version, sha1}: loaded at boot
    loaded_policy                           JSON {policy, version, sha1, boot_id}: loaded now
    labels.json                             labels of VMs, resources and VIFs
    .lock                                   flock: one writer across processes

At start: if ``loaded_policy`` was written during this boot (same kernel boot id), the daemon
was restarted and that policy is resumed; otherwise the host booted, and the boot policy loads,
or DEFAULT when there is none.  A policy file that fails its trust check, its hash or its
validation is not loaded: DEFAULT is, and ``warnings`` says why (fail closed, as xend fell back
to DEFAULT on a hash mismatch).

Deviation from Xen 3.3, on purpose: xend refused any ``set`` without the LOAD flag while a
policy was loaded.  Here a policy is always loaded (DEFAULT at least), so installing another
policy for the next boot (BOOT only) or just installing it (no flags) is allowed, as long as it
does not replace the loaded policy's own name (that is an update and needs LOAD).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Hashable, Iterable, Iterator
from importlib import resources
from typing import Any

from ..compiled import CompiledPolicy
from ..constants import (
    ACM_POLICY_ID,
    DEFAULT_POLICY_NAME,
    INACCESSIBLE,
    INACCESSIBLE_POLICY,
    UNLABELED,
    XS_INST_BOOT,
    XS_INST_LOAD,
    XS_POLICY_ACM,
)
from ..errors import (
    LabelError,
    MediationDenied,
    PolicyError,
    PolicyFileError,
    PolicyUpdateRefused,
    UpdateError,
    Xserr,
    XsmError,
)
from ..labels import Label, format_label, parse_label
from ..mediator import DOM0, Mediator, UpdateResult
from ..model import AcmPolicy, VmLabel
from ..names import policy_name_problem, policy_stem
from ..safefile import atomic_remove, atomic_write, check_trusted_dir, fsync_dir, read_trusted
from ..verdict import DryRunReport, Verdict
from ..xmlsafe import MAX_POLICY_BYTES
from .editor import XsmPolicy
from .labelstore import JsonLabelStore, LabelStore
from .records import PolicyState, failed
from .resources import canonical_resource

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
_SUFFIX = "-security_policy.xml"


def _read_boot_id() -> str | None:
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def builtin_default() -> AcmPolicy:
    """The DEFAULT policy shipped with the package (always available, never trusted-from-disk)."""
    data = resources.files("policy").joinpath("examples/DEFAULT" + _SUFFIX).read_bytes()
    return AcmPolicy.from_xml(data, source="<builtin DEFAULT>")


class XsmHost:
    """The host's XSM/ACM state: active policy (``mediator``), installed policies, labels.

    ``XsmHost(state_dir)`` creates the directory if needed (0755; it must not be writable by
    group/others).  ``boot_id`` overrides the kernel's boot id (tests simulate reboots with it);
    ``label_store`` replaces the JSON label file; ``dom0`` is Domain-0's key in the mediator.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike,
        *,
        boot_id: str | None = None,
        label_store: LabelStore | None = None,
        dom0: Hashable | None = DOM0,
        xstype: int = XS_POLICY_ACM,
    ) -> None:
        self.state_dir = os.path.abspath(os.fspath(state_dir))
        self.policies_dir = os.path.join(self.state_dir, "policies")
        for d in (self.state_dir, self.policies_dir):
            if not os.path.isdir(d):
                os.makedirs(d, mode=0o755, exist_ok=True)
            check_trusted_dir(d)
        self._boot_id = boot_id if boot_id is not None else _read_boot_id()
        self._xstype = xstype
        self._dom0 = dom0
        self._lock = threading.RLock()
        self.labels: LabelStore = label_store or JsonLabelStore(
            os.path.join(self.state_dir, "labels.json")
        )
        self.warnings: list[str] = []
        with self._locked():
            self.mediator = self._start()

    # ------------------------------------------------------------------ infrastructure
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            fd = os.open(
                os.path.join(self.state_dir, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _paths(self, name: str) -> tuple[str, str, str]:
        stem = os.path.join(self.policies_dir, policy_stem(name))
        return stem + _SUFFIX, stem + ".map", stem + ".bin"

    def _marker(self, which: str) -> dict | None:
        path = os.path.join(self.state_dir, which)
        if not os.path.lexists(path):
            return None
        try:
            data = json.loads(read_trusted(path, 65536))
            if not isinstance(data, dict) or not isinstance(data.get("policy"), str):
                raise ValueError("not a marker")
            return data
        except (XsmError, ValueError) as exc:
            self.warnings.append(f"ignoring {path}: {exc}")
            return None

    def _write_marker(self, which: str, c: CompiledPolicy, **extra: Any) -> None:
        data = {"policy": c.name, "version": c.version, "sha1": c.sha1.hex(), **extra}
        text = json.dumps(data) + "\n"
        path = os.path.join(self.state_dir, which)
        # unchanged markers are not rewritten: a watcher (svirtd reloads when this file
        # changes) must not see a change every time a process merely opens the state
        with contextlib.suppress(OSError, XsmError):
            if read_trusted(path, 65536).decode("utf-8", "replace") == text:
                return
        atomic_write(path, text, 0o644)

    def _install_files(self, c: CompiledPolicy) -> None:
        xml, map_, bin_ = self._paths(c.name)
        directory = os.path.dirname(xml)
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o755, exist_ok=True)
            fsync_dir(os.path.dirname(directory))
        atomic_write(xml, c.xml, 0o644)
        atomic_write(map_, c.map_text, 0o644)
        atomic_write(bin_, c.binary, 0o644)

    def _read_installed(self, name: str) -> AcmPolicy | None:
        xml, _m, _b = self._paths(name)
        if not os.path.lexists(xml):
            return None
        data = read_trusted(xml, MAX_POLICY_BYTES)
        return AcmPolicy.from_xml(data, source=xml)

    def _installed_names(self) -> list[str]:
        names = []
        for root, _dirs, files in os.walk(self.policies_dir):
            rel = os.path.relpath(root, self.policies_dir)
            for f in files:
                if f.endswith(_SUFFIX) and not f.startswith("."):
                    parts = [] if rel == "." else rel.split(os.sep)
                    names.append(".".join([*parts, f[: -len(_SUFFIX)]]))
        return sorted(names)

    # ------------------------------------------------------------------ start-up
    def _start(self) -> Mediator:
        default = builtin_default()
        if self._read_installed_quiet(DEFAULT_POLICY_NAME) is None:
            self._install_files(default.compile())
        loaded = self._marker("loaded_policy")
        boot = self._marker("boot_policy")
        if loaded and self._boot_id is not None and loaded.get("boot_id") == self._boot_id:
            want, why = loaded, "resumed (same boot)"
        elif loaded and self._boot_id is None:
            want, why = loaded, "resumed (boot id unknown)"
        elif boot:
            want, why = boot, "boot policy"
        else:
            want, why = None, "no boot policy"
        compiled = None
        if want is not None:
            try:
                p = self._read_installed(want["policy"])
                if p is None:
                    raise XsmError(Xserr.FILE_ERROR, f"policy {want['policy']} is not installed")
                compiled = p.compile()
                if compiled.sha1.hex() != want.get("sha1"):
                    raise XsmError(
                        Xserr.FILE_ERROR,
                        f"policy {want['policy']} changed on disk (its SHA-1 no longer matches "
                        "the recorded one)",
                    )
            except (PolicyError, ValueError) as exc:
                self.warnings.append(
                    f"not loading policy {want['policy']!r} ({why}): {exc}; DEFAULT is loaded "
                    "instead - fix or reinstall the policy"
                )
                compiled = None
        if compiled is None:
            installed = self._read_installed_quiet(DEFAULT_POLICY_NAME)
            compiled = (
                installed if installed is not None and installed.is_default() else default
            ).compile()
        dom0_label = None
        if self._dom0 is not None:
            try:
                stored = self._stored_vm_label(str(self._dom0))
            except XsmError as exc:
                self.warnings.append(f"labels unreadable, Domain-0 gets the bootstrap label: {exc}")
                stored = None
            if (
                stored is not None
                and stored.valid
                and stored.policy == compiled.name
                and stored.name in compiled.vm
            ):
                dom0_label = stored.name
        med = Mediator(compiled, dom0=self._dom0, dom0_label=dom0_label)
        self._write_marker("loaded_policy", compiled, boot_id=self._boot_id)
        return med

    def _read_installed_quiet(self, name: str) -> AcmPolicy | None:
        try:
            return self._read_installed(name)
        except PolicyError as exc:
            self.warnings.append(str(exc))
            return None

    # ------------------------------------------------------------------ host calls
    def get_xstype(self) -> int:
        """XS_POLICY_ACM (1) when sHype/ACM is supported, XS_POLICY_NONE (0) otherwise."""
        return self._xstype

    def get_xstype_name(self) -> str:
        return ACM_POLICY_ID if self._xstype & XS_POLICY_ACM else "none"

    @property
    def active(self) -> CompiledPolicy:
        return self.mediator.compiled

    def _flags_of(self, name: str) -> int:
        flags = 0
        boot = self._marker("boot_policy")
        if (boot and boot["policy"] == name) or (boot is None and name == DEFAULT_POLICY_NAME):
            flags |= XS_INST_BOOT
        if self.active.name == name:
            flags |= XS_INST_LOAD
        return flags

    def _state_of(self, c: CompiledPolicy, message: str = "ok") -> PolicyState:
        return PolicyState(
            xserr=0,
            message=message,
            xs_ref=c.name,
            repr=c.xml.decode("utf-8", "replace"),
            type=XS_POLICY_ACM,
            flags=self._flags_of(c.name),
            version=c.version,
        )

    def get_policy(self) -> PolicyState:
        """Xen-API ``get_xspolicy``: the loaded policy and its flags."""
        with self._lock:
            return self._state_of(self.active)

    def list_policies(self) -> list[dict[str, Any]]:
        """Installed policies: name, version, flags (BOOT=1, LOAD=2), sha1."""
        with self._lock:
            out = []
            for name in self._installed_names():
                try:
                    p = self._read_installed(name)
                except PolicyError as exc:
                    out.append({"name": name, "error": str(exc), "flags": self._flags_of(name)})
                    continue
                c = p.compile()
                out.append(
                    {
                        "name": name,
                        "version": p.version,
                        "flags": self._flags_of(name),
                        "sha1": c.sha1.hex(),
                    }
                )
            return out

    def set_policy(
        self,
        xml: bytes | str,
        flags: int,
        overwrite: bool = False,
        *,
        xstype: int = XS_POLICY_ACM,
        source: str = "<set_policy>",
    ) -> PolicyState:
        """Xen-API ``set_xspolicy``: install a policy, and with LOAD update the loaded one.

        ``flags``: XS_INST_LOAD (update the running policy now, all-or-nothing, replayed over
        running domains) and/or XS_INST_BOOT (load it at the next boot).  ``overwrite`` allows
        replacing a different installed policy of the same name that is not loaded.
        """
        if not (xstype & XS_POLICY_ACM) or not (self._xstype & XS_POLICY_ACM):
            return failed(
                Xserr.POLICY_TYPE_UNSUPPORTED,
                "only sHype/ACM policies (type ACM) are supported on this host",
            )
        try:
            new = AcmPolicy.from_xml(xml, source=source).compile()
        except PolicyFileError as exc:
            return failed(
                exc.xserr,
                f"policy rejected: {exc.problems[0].message}",
                problems=str(exc).splitlines(),
            )
        if new.name == DEFAULT_POLICY_NAME and not new.policy.is_default():
            return failed(
                Xserr.BAD_POLICY_NAME,
                "the name DEFAULT is reserved for Xen's DEFAULT policy (SystemManagement and "
                "__UNLABELED__ only); give this policy another name",
            )
        with self._locked():
            return self._set_compiled(new, flags, overwrite)

    def _set_compiled(
        self, new: CompiledPolicy, flags: int, overwrite: bool, dom0_default_reset: bool = False
    ) -> PolicyState:
        loaded = self.active
        if new.name != loaded.name and not overwrite:
            try:
                other = self._read_installed(new.name)
            except PolicyError:
                other = None  # an unreadable installed copy may be replaced
            if (
                other is not None
                and other.compile().sha1 != new.sha1
                and new.name != DEFAULT_POLICY_NAME
            ):
                return failed(
                    Xserr.BOOTPOLICY_INSTALLED,
                    f"a different policy named {new.name!r} is already installed; pass "
                    "overwrite to replace it",
                )
        if flags & XS_INST_LOAD:
            if new.sha1 == loaded.sha1 and new.name == loaded.name:
                if flags & XS_INST_BOOT:
                    self._set_boot(new)
                return self._state_of(self.active, "policy is already loaded; nothing to do")
            errors = self.mediator.check_update(new)
            if errors:
                return self._update_failed(loaded, new, errors)
            self._install_files(new)
            try:
                result = self.mediator.update_policy(new)
            except PolicyUpdateRefused as exc:  # something started meanwhile
                self._install_files(loaded)
                return self._update_failed(loaded, new, exc.errors, exc.xserr)
            self._write_marker("loaded_policy", new, boot_id=self._boot_id)
            if flags & XS_INST_BOOT:
                self._set_boot(new)
            note = ""
            try:
                self._rename_labels(result)
            except (OSError, XsmError) as exc:  # labels stay old: they fail closed, say so
                note = (
                    f"; WARNING: stored labels could not be renamed ({exc}): labels of "
                    f"{result.old_policy} no longer resolve, relabel those VMs/resources"
                )
                self.warnings.append(note[2:])
            return self._state_of(
                new,
                f"policy {new.name} {new.version} is loaded (updated from "
                f"{result.old_policy} {result.old_version}){note}",
            )
        if new.name == loaded.name:
            if new.sha1 != loaded.sha1:
                return failed(
                    Xserr.POLICY_LOADED,
                    f"policy {new.name} is loaded; changing it is an update: pass the LOAD flag",
                )
        else:
            self._install_files(new)
        if flags & XS_INST_BOOT:
            self._set_boot(new)
        return self._state_of(new, f"policy {new.name} {new.version} is installed")

    def _update_failed(
        self,
        loaded: CompiledPolicy,
        new: CompiledPolicy,
        errors: list[UpdateError],
        xserr: Xserr | None = None,
    ) -> PolicyState:
        if xserr is None:
            codes = {e.code for e in errors}
            if codes <= {int(Xserr.VERSION_PREVENTS_UPDATE)}:
                xserr = Xserr.VERSION_PREVENTS_UPDATE
            elif codes <= {int(Xserr.BAD_LABEL)}:
                xserr = Xserr.BAD_LABEL
            elif codes <= {int(Xserr.RESOURCE_ACCESS)}:
                xserr = Xserr.RESOURCE_ACCESS
            else:
                xserr = Xserr.HV_OP_FAILED
        return failed(
            xserr,
            f"update of {loaded.name} {loaded.version} to {new.name} {new.version} refused; "
            "nothing was changed",
            errors,
        )

    def _set_boot(self, c: CompiledPolicy) -> None:
        if c.name == DEFAULT_POLICY_NAME:
            atomic_remove(os.path.join(self.state_dir, "boot_policy"))
        else:
            self._write_marker("boot_policy", c)

    def rm_boot_policy(self) -> None:
        """Xen-API ``rm_xsbootpolicy``: the next boot loads DEFAULT."""
        with self._locked():
            atomic_remove(os.path.join(self.state_dir, "boot_policy"))

    def reset_policy(self) -> PolicyState:
        """Xen-API ``reset_xspolicy``: an update to DEFAULT that renames only Domain-0's label.

        Fails (nothing changed) while guests hold labels DEFAULT does not have; halt them first.
        """
        with self._locked():
            default = builtin_default()
            dom0 = self.mediator.running().get(self._dom0) if self._dom0 is not None else None
            if dom0 is not None and dom0.label != "SystemManagement":
                labels = tuple(
                    VmLabel(lbl.name, lbl.ste_types, lbl.chwall_types, dom0.label)
                    if lbl.name == "SystemManagement"
                    else lbl
                    for lbl in default.vm_labels
                )
                default = default.evolve(vm_labels=labels, source="<DEFAULT reset>")
            state = self._set_compiled(default.compile(), XS_INST_LOAD, True)
            if not state.ok:
                state = PolicyState(
                    **{
                        **state.__dict__,
                        "message": state.message + "; try to halt all guests first",
                    }
                )
            return state

    def rm_policy(self, name: str) -> None:
        """Remove an installed policy that is neither loaded nor the boot policy."""
        with self._locked():
            if policy_name_problem(name):
                raise XsmError(Xserr.BAD_POLICY_NAME, policy_name_problem(name)[1])
            if name == DEFAULT_POLICY_NAME:
                raise XsmError(Xserr.GENERAL_FAILURE, "DEFAULT cannot be removed")
            if self._flags_of(name):
                raise XsmError(
                    Xserr.POLICY_LOADED,
                    f"policy {name} is loaded or the boot policy; it cannot be removed",
                )
            paths = self._paths(name)
            if not os.path.lexists(paths[0]):
                raise XsmError(Xserr.FILE_ERROR, f"policy {name} is not installed")
            for p in paths:
                atomic_remove(p)

    def policy(self, name: str | None = None, *, dry_run: bool = False) -> XsmPolicy:
        """An :class:`~policy.xsm.editor.XsmPolicy` handle (the loaded policy by default);
        ``dry_run``: its edits only say whether they would pass (``preview`` = the result)."""
        name = name or self.active.name
        with self._lock:
            if name != self.active.name and self._read_installed(name) is None:
                raise XsmError(Xserr.FILE_ERROR, f"policy {name} is not installed")
        return XsmPolicy(self, name, dry_run=dry_run)

    def installed(self, name: str) -> AcmPolicy:
        """The installed policy ``name`` (the loaded one comes from memory)."""
        with self._lock:
            if name == self.active.name:
                return self.active.policy
            p = self._read_installed(name)
            if p is None:
                raise XsmError(Xserr.FILE_ERROR, f"policy {name} is not installed")
            return p

    # ------------------------------------------------------------------ label bookkeeping
    def _rename_labels(self, res: UpdateResult) -> None:
        """After an update: rename labels by the ``from`` map, invalidate removed ones."""
        changes: dict[str, dict[str, str | None]] = {}
        for kind, after in (
            ("vm", res.vm_label_after),
            ("resource", res.res_label_after),
            ("vif", res.res_label_after),
        ):
            for key, text in self.labels.items(kind).items():
                try:
                    lab = parse_label(text)
                except LabelError:
                    continue
                if not lab.valid or lab.policy != res.old_policy:
                    continue
                now = after(lab.name)
                new = (
                    format_label(res.new_policy, now)
                    if now is not None
                    else str(Label(res.old_policy, lab.name).invalidated())
                )
                if new != text:
                    changes.setdefault(kind, {})[key] = new
        if changes:
            self.labels.update(changes)

    def _stored_vm_label(self, vm: str) -> Label | None:
        text = self.labels.get("vm", vm)
        if text is None:
            return None
        try:
            return parse_label(text)
        except LabelError:
            return None

    def _label_in_active(self, label: str | Label, kind: str) -> Label:
        c = self.active
        try:
            lab = parse_label(label, c.name)
        except LabelError as exc:
            raise XsmError(exc.xserr, exc.message) from None
        if not lab.valid:
            raise XsmError(
                Xserr.BAD_LABEL, f"{lab} is an invalidated label; use a label of policy {c.name}"
            )
        if kind == "resource" and lab.name == INACCESSIBLE:
            return Label(INACCESSIBLE_POLICY, INACCESSIBLE)
        if lab.policy != c.name:
            raise XsmError(
                Xserr.BAD_LABEL,
                f"{lab} belongs to policy {lab.policy}, but the active policy is "
                f"{c.name}; labels can only be set under the active policy",
            )
        table = c.vm if kind == "vm" else c.res
        if lab.name not in table:
            names = c.vm_order[1:] if kind == "vm" else c.res_order
            raise XsmError(
                Xserr.BAD_LABEL,
                f"{lab.name!r} is not a {'VM' if kind == 'vm' else 'resource'} label of "
                f"policy {c.name} (labels: {', '.join(names) or 'none'})",
            )
        return Label(c.name, lab.name)

    @staticmethod
    def _same(current: str | None, given: str | Label | None, default_policy: str) -> bool:
        """Is ``given`` (an old label a caller passed) the ``current`` stored label?

        No stored label means unlabeled: matched by None, "" or ``ACM:<active>:__UNLABELED__``.
        """
        try:
            if current is None:
                return given in (None, "") or parse_label(given, default_policy) == Label(
                    default_policy, UNLABELED
                )
            if given in (None, ""):
                return False
            return parse_label(current, default_policy) == parse_label(given, default_policy)
        except LabelError:
            return False

    # ------------------------------------------------------------------ label records
    def label_record(self, text: str | Label | None) -> dict[str, Any]:
        """Seed 000's ``label record {xsmtype type; string label}`` of a label string:
        ``{"type": 1 (XS_POLICY_ACM, the seed's POLICY_SHYPE), "label": "<policy>:<label>"}``
        (the seed's display ``(POLICY_SHYPE, "test-wld:dom_System")``); an unlabeled object
        has the active policy's ``__UNLABELED__``."""
        if text in (None, ""):
            lab = Label(self.active.name, UNLABELED)
        else:
            try:
                lab = parse_label(text, self.active.name)
            except LabelError as exc:
                raise XsmError(exc.xserr, exc.message) from None
        return {"type": XS_POLICY_ACM, "label": f"{lab.policy}:{lab.name}"}

    def vm_get_label_record(self, vm: str) -> dict[str, Any]:
        """Seed 000's ``VM.getlabel()``: the label record of a VM."""
        return self.label_record(self.vm_get_label(vm))

    def resource_get_label_record(self, resource: str) -> dict[str, Any]:
        """Seed 000's ``VBD.getlabel()`` (through the backing resource)."""
        return self.label_record(self.resource_get_label(resource))

    def vif_get_label_record(self, vm: str, index: int) -> dict[str, Any]:
        """Seed 000's ``VIF.getlabel()``."""
        return self.label_record(self.vif_get_label(vm, index))

    # ------------------------------------------------------------------ VM labels
    def vm_get_label(self, vm: str) -> str:
        """``ACM:<policy>:<label>`` of a VM; Domain-0's from the live state; default unlabeled."""
        with self._lock:
            if self._dom0 is not None and vm == self._dom0:
                return self.mediator.label_of(vm) or format_label(
                    self.active.name, self.active.bootstrap
                )
            text = self.labels.get("vm", vm)
            return text if text is not None else format_label(self.active.name, UNLABELED)

    def vm_set_label(
        self, vm: str, label: str | Label, old_label: str | Label | None = None
    ) -> int:
        """Label a VM (Xen-API ``VM.set_security_label``); returns the new ssidref if running.

        A VM that already has a label needs ``old_label`` = its current label (relabel).  A
        running VM is relabeled in the mediator first, all-or-nothing.
        """
        with self._locked():
            lab = self._label_in_active(label, "vm")
            is_dom0 = self._dom0 is not None and vm == self._dom0
            current = self.mediator.label_of(vm) if is_dom0 else self.labels.get("vm", vm)
            if current is not None and old_label is None and not is_dom0:
                raise XsmError(
                    Xserr.BAD_LABEL,
                    f"VM {vm!r} is already labeled {current}; relabel it by passing "
                    "its current label as the old label",
                )
            if old_label is not None and not self._same(current, old_label, self.active.name):
                raise XsmError(
                    Xserr.BAD_LABEL,
                    f"VM {vm!r} is labeled {current or 'unlabeled'}, not {old_label}",
                )
            running = vm in self.mediator.running()
            ssidref = 0
            if running:
                try:
                    ssidref = self.mediator.relabel(vm, lab).ssidref
                except MediationDenied as exc:
                    raise XsmError(exc.xserr, exc.reason) from None
            self.labels.set("vm", vm, str(lab))
            return ssidref

    def vm_relabel(self, vm: str, label: str | Label, old_label: str | Label) -> int:
        """Relabel a VM whose current label is ``old_label`` (checked)."""
        if old_label is None:
            raise XsmError(Xserr.BAD_LABEL, "relabel needs the VM's current label")
        return self.vm_set_label(vm, label, old_label)

    def vm_rm_label(self, vm: str, old_label: str | Label) -> None:
        """Remove a VM's label; only while it is not running (Xen: HALTED or SUSPENDED)."""
        with self._locked():
            if vm in self.mediator.running():
                raise XsmError(
                    Xserr.VM_WRONG_STATE, f"VM {vm!r} is running; stop it before removing its label"
                )
            current = self.labels.get("vm", vm)
            if current is None:
                raise XsmError(Xserr.BAD_LABEL, f"VM {vm!r} has no label")
            if not self._same(current, old_label, self.active.name):
                raise XsmError(Xserr.BAD_LABEL, f"VM {vm!r} is labeled {current}, not {old_label}")
            self.labels.set("vm", vm, None)

    # ------------------------------------------------------------------ resource / VBD labels
    def _resource_users(self, resource: str) -> list[Hashable]:
        return [
            k
            for k, d in self.mediator.running().items()
            if any(r == resource for r, _lbl in d.resources)
        ]

    def resource_get_label(self, resource: str) -> str | None:
        """The label of a resource (canonical name), or None when it is unlabeled."""
        return self.labels.get("resource", canonical_resource(resource))

    def resource_set_label(
        self, resource: str, label: str | Label | None, old_label: str | Label | None = None
    ) -> str:
        """Label a resource (``__INACCESSIBLE__`` makes it unusable; None/"" removes the label).

        Refused while a running domain uses it (RESOURCE_IN_USE); relabeling needs the current
        label as ``old_label``.  Returns the canonical resource name.
        """
        name = canonical_resource(resource)
        with self._locked():
            current = self.labels.get("resource", name)
            new = None if label in (None, "") else str(self._label_in_active(label, "resource"))
            if current is not None and old_label is None:
                raise XsmError(
                    Xserr.RESOURCE_ALREADY_LABELED,
                    f"resource {name} is already labeled {current}; pass its current "
                    "label as the old label to relabel it",
                )
            if old_label is not None and not self._same(current, old_label, self.active.name):
                raise XsmError(
                    Xserr.BAD_LABEL,
                    f"resource {name} is labeled {current or 'unlabeled'}, not {old_label}",
                )
            users = self._resource_users(name)
            if users:
                raise XsmError(
                    Xserr.RESOURCE_IN_USE,
                    f"resource {name} is in use by running domain(s) "
                    f"{', '.join(map(repr, users))}; stop them first",
                )
            self.labels.set("resource", name, new)
            return name

    def resource_relabel(
        self, resource: str, label: str | Label | None, old_label: str | Label
    ) -> str:
        """Relabel a resource whose current label is ``old_label`` (checked)."""
        if old_label in (None, ""):
            raise XsmError(Xserr.BAD_LABEL, "relabel needs the resource's current label")
        return self.resource_set_label(resource, label, old_label)

    def get_labeled_resources(self) -> dict[str, str]:
        """Every labeled resource: canonical name -> label string (``xm resources``)."""
        return self.labels.items("resource")

    def resource_rm_label(self, resource: str, old_label: str | Label) -> str:
        """``xm rmlabel res``: remove a resource's label, which must be ``old_label``;
        RESOURCE_NOT_LABELED when it has none, RESOURCE_IN_USE while a running domain uses it."""
        name = canonical_resource(resource)
        # not under _locked(): resource_set_label takes it (a second flock would wait for
        # ourselves); old_label makes the removal compare-and-swap anyway
        if self.labels.get("resource", name) is None:
            raise XsmError(Xserr.RESOURCE_NOT_LABELED, f"resource {name} is not labeled")
        return self.resource_set_label(name, None, old_label)

    vbd_get_label = resource_get_label  # a VBD is labeled through its backing resource
    vbd_set_label = resource_set_label
    vbd_relabel = resource_relabel

    # ------------------------------------------------------------------ VIF labels
    def vif_get_label(self, vm: str, index: int) -> str | None:
        return self.labels.get("vif", f"{vm}/{int(index)}")

    def vif_set_label(
        self, vm: str, index: int, label: str | Label | None, old_label: str | Label | None = None
    ) -> None:
        """Label a VM's network interface; refused while the VM runs (RESOURCE_IN_USE)."""
        key = f"{vm}/{int(index)}"
        with self._locked():
            if vm in self.mediator.running():
                raise XsmError(
                    Xserr.RESOURCE_IN_USE,
                    f"VM {vm!r} is running; stop it before labeling its vif-{index}",
                )
            current = self.labels.get("vif", key)
            if current is not None and old_label is None:
                raise XsmError(
                    Xserr.RESOURCE_ALREADY_LABELED,
                    f"vif-{index} of {vm!r} is already labeled {current}; pass its "
                    "current label as the old label to relabel it",
                )
            if old_label is not None and not self._same(current, old_label, self.active.name):
                raise XsmError(
                    Xserr.BAD_LABEL,
                    f"vif-{index} of {vm!r} is labeled {current or 'unlabeled'}, not {old_label}",
                )
            new = None if label in (None, "") else str(self._label_in_active(label, "resource"))
            self.labels.set("vif", key, new)

    def vif_rm_label(self, vm: str, index: int, old_label: str | Label) -> None:
        """``xm rmlabel vif-<idx>``: remove a VIF's label, which must be ``old_label``."""
        if self.labels.get("vif", f"{vm}/{int(index)}") is None:  # (not locked: see above)
            raise XsmError(Xserr.RESOURCE_NOT_LABELED, f"vif-{int(index)} of {vm!r} is not labeled")
        self.vif_set_label(vm, index, None, old_label)

    def vif_relabel(
        self, vm: str, index: int, label: str | Label | None, old_label: str | Label
    ) -> None:
        """Relabel a VIF whose current label is ``old_label`` (checked)."""
        if old_label in (None, ""):
            raise XsmError(Xserr.BAD_LABEL, "relabel needs the interface's current label")
        self.vif_set_label(vm, index, label, old_label)

    # ------------------------------------------------------------------ lifecycle helpers
    def _vm_resources(self, vm: str, resources: Iterable[str], vifs: Iterable[int]) -> dict:
        out: dict[str, str | None] = {}
        for r in resources:
            name = canonical_resource(r)
            out[name] = self.labels.get("resource", name)
        for i in vifs:
            out[f"vif-{int(i)}"] = self.labels.get("vif", f"{vm}/{int(i)}")
        return out

    def dry_run(
        self, vm: str, resources: Iterable[str] = (), vifs: Iterable[int] = ()
    ) -> DryRunReport:
        """``xm dry-run``: would ``vm`` (with these resources) start now, item by item?"""
        return self.mediator.dry_run(
            self.vm_get_label(vm), self._vm_resources(vm, resources, vifs), vm
        )

    def domain_create(self, vm: str, resources: Iterable[str] = (), vifs: Iterable[int] = ()):
        """Start ``vm`` in the mediator with its stored labels; raises MediationDenied."""
        return self.mediator.domain_create(
            vm, self.vm_get_label(vm), self._vm_resources(vm, resources, vifs)
        )

    def domain_destroy(self, vm: str):
        return self.mediator.domain_destroy(vm)

    def can_run(self, label: str | Label) -> Verdict:
        """Xen-API ``can_run``: could a domain with this label start now?"""
        return self.mediator.can_run(label)

    def label_names(self, kind: str = "vm", policy: str | None = None) -> list[str]:
        """``xm labels``: sorted label names of the active (or an installed) policy."""
        p = self.installed(policy) if policy else self.active.policy
        names: set[str] = set()
        if kind in ("vm", "any"):
            names.update(p.vm_label_names)
        if kind in ("res", "resource", "any"):
            names.update(p.resource_label_names)
        return sorted(names)


__all__ = ["PolicyState", "XsmHost", "builtin_default"]
