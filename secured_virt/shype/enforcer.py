"""sHype/ACM on real domains: labels in libvirt metadata, mediation around instantiation.

The mandatory half of the gate.  ``policy.xsm.XsmHost`` owns the active policy, the installed
policies and the (emulated) hypervisor's mediation state; this module joins it to the real
hypervisor:

* **Where labels live.**  A VM's label is (policy name, label name) in the domain's
  ``<metadata>`` (see ``vmmeta``), so it travels inside save images and migration streams and
  its local ssidref is computed from the *active* policy whenever the domain is instantiated
  (seed 001).  ``DomainLabelStore`` presents those metadata labels to ``XsmHost`` as its VM label
  store, so XsmHost's label calls and its rename bookkeeping on policy updates act on the real
  domains.  Resource (disk) and VIF labels stay in XsmHost's JSON file in the ACM state dir.
* **Never drifting.**  Before every check the mediation state is rebuilt from what the
  hypervisor really runs (``sync``) — in svirtd and in each direct svirsh invocation alike —
  with each running domain's resources read from its *live* XML: a disk attached to the
  running instance only is still a disk it uses.
* **Labels bound to UUIDs.**  Every label written to a domain is also recorded by UUID
  (``bound.BoundLabels``), so a label survives undefine, and a define of the same UUID gets it
  back instead of running unlabelled.
* **Atomic host-wide.**  ``exclusive()`` holds an flock on ``<acm_state_dir>/instantiate.lock``
  from the check until the hypervisor call has returned, so two concurrent starts of
  conflicting domains — from two processes or two daemon threads — can never both succeed.
  It is re-entrant within one thread (a command that takes it inside the service's own
  ``exclusive()`` must not deadlock on a second flock of the same file).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator

import policy
from policy.xsm import XsmHost, canonical_resource
from policy.xsm.labelstore import JsonLabelStore
from secured_virt.backends.base import BackendError, NoSuchDomain
from secured_virt.confinement import vmmeta

from . import INSTANTIATING  # noqa: F401 - re-exported
from .bound import BoundLabels


class DomainLabelStore:
    """XsmHost's label store: VM labels on the domains themselves, the rest in JSON."""

    def __init__(self, backend_getter: Callable, json_path: str, bound: BoundLabels | None = None):
        self._backend = backend_getter
        self._json = JsonLabelStore(json_path)
        self._bound = bound

    def _meta(self, name: str) -> vmmeta.VmMeta:
        try:
            return vmmeta.parse(self._backend().get_metadata(name, vmmeta.NS))
        except NoSuchDomain:
            return vmmeta.VmMeta()

    def get(self, kind: str, key: str) -> str | None:
        if kind != "vm":
            return self._json.get(kind, key)
        m = self._meta(key)
        return policy.format_label(m.label_policy, m.label) if m.label else None

    def set(self, kind: str, key: str, value: str | None) -> None:
        if kind != "vm":
            self._json.set(kind, key, value)
            return
        self.update({"vm": {key: value}})

    def items(self, kind: str) -> dict[str, str]:
        if kind != "vm":
            return self._json.items(kind)
        out = {}
        for d in self._backend().list_domains(include_inactive=True):
            text = self.get("vm", d.name)
            if text:
                out[d.name] = text
        return out

    def update(self, changes) -> None:
        vm_changes = dict(changes.get("vm", {}))
        rest = {k: v for k, v in changes.items() if k != "vm"}
        done: list[tuple[str, vmmeta.VmMeta]] = []
        try:
            for name, value in vm_changes.items():
                old = self._meta(name)
                self._write(name, old, value)
                done.append((name, old))
        except Exception:
            for name, old in reversed(done):  # all or nothing, as far as the hypervisor allows
                with contextlib.suppress(Exception):
                    self._write_meta(name, old)
            raise
        if rest:
            self._json.update(rest)

    def _write(self, name: str, old: vmmeta.VmMeta, value: str | None) -> None:
        if value is None:
            new = vmmeta.VmMeta(owner=old.owner, realm=old.realm)
        else:
            lab = policy.parse_label(value, old.label_policy or "")
            new = vmmeta.VmMeta(
                owner=old.owner, label_policy=lab.policy, label=lab.name, realm=old.realm
            )
        self._write_meta(name, new)

    def _write_meta(self, name: str, meta: vmmeta.VmMeta) -> None:
        backend = self._backend()
        info = backend.lookup(name)
        if self._bound is not None and info.uuid:  # first: a label is never on a VM unrecorded
            self._bound.bind(info.uuid, name, meta)
        vmmeta.write(backend, name, meta)


class AcmEnforcer:
    def __init__(self, config, backend_getter: Callable):
        self.config = config
        self._backend = backend_getter
        os.makedirs(config.acm_state_dir, mode=0o755, exist_ok=True)
        self.bound = BoundLabels(config.acm_state_dir)
        self.labels = DomainLabelStore(
            backend_getter, os.path.join(config.acm_state_dir, "labels.json"), self.bound
        )
        self.host = XsmHost(config.acm_state_dir, label_store=self.labels, dom0=config.host_object)
        self._thread_lock = threading.RLock()
        self._held = threading.local()
        if getattr(config, "backend", "") == "xl":  # last: only a whole enforcer resolves
            backend_getter().ssidref_resolver = self.resolve_ssidref

    def resolve_ssidref(self, ssidref: int) -> tuple[str, str] | None:
        """(policy, label) of a legacy xl ``ssidref = N`` under the active policy's map (Xen
        reads its CHWALL half), or None when that policy has no such VM label."""
        active = self.host.active
        try:
            return active.name, active.label_for(ssidref)
        except policy.LabelError:
            return None

    # -- state --------------------------------------------------------------------------------
    @property
    def active(self) -> policy.CompiledPolicy:
        return self.host.active

    def vm_label(self, name: str) -> str:
        """``ACM:<policy>:<label>`` of a VM (``__UNLABELED__`` under the active policy if none)."""
        return self.host.vm_get_label(name)

    def resources_of_xml(self, name: str, xml: str) -> dict[str, str | None]:
        disks, n_vifs = vmmeta.domain_devices(xml)
        out: dict[str, str | None] = {}
        for d in disks:
            try:
                key = canonical_resource(d)
            except policy.XsmError:
                key = d
            out[key] = self.host.resource_get_label(key)
        for i in range(n_vifs):  # a VIF counts once it carries a label (Xen-API VIF labels)
            vif = self.host.vif_get_label(name, i)
            if vif is not None:
                out[f"vif-{i}"] = vif
        return out

    def resources_of(self, name: str) -> dict[str, str | None]:
        """The resources a domain uses *now*: the live XML of a running domain (a disk
        attached with --live is in it), the persistent one of an inactive domain."""
        return self.resources_of_xml(name, self._backend().dumpxml(name, inactive=False))

    def resources_of_device(self, name: str, device_xml: str) -> dict[str, str | None]:
        """The resources one device adds to ``name``: a disk's source, or the label of the
        interface slot it would take (the next vif-N after the interfaces it has now)."""
        from lxml import etree

        dev = etree.fromstring(device_xml.encode())
        wrapped = f"<domain><name>{name}</name><devices>{device_xml}</devices></domain>"
        disks, _n = vmmeta.domain_devices(wrapped) if dev.tag == "disk" else ([], 0)
        out: dict[str, str | None] = {}
        for d in disks:
            try:
                key = canonical_resource(d)
            except policy.XsmError:
                key = d
            out[key] = self.host.resource_get_label(key)
        if dev.tag == "interface":
            seen = set()
            for inactive in (False, True):  # the slot in the live and in the persistent XML
                _d, n = vmmeta.domain_devices(self._backend().dumpxml(name, inactive=inactive))
                if n not in seen:
                    seen.add(n)
                    vif = self.host.vif_get_label(name, n)
                    if vif is not None:
                        out[f"vif-{n}"] = vif
        return out

    def check_resources(self, name: str, label: str | None, resources) -> policy.Verdict | None:
        """STE for resources added to a domain: the first refusal, or None if all share a
        type with ``label``."""
        for res, rlabel in resources.items():
            v = self.host.mediator.share_resource(label, rlabel, res)
            if not v.allowed:
                return v
        return None

    def sync(self, exclude=()) -> list:
        """Rebuild the mediation state from the domains that really run now (``exclude``:
        names to leave out, e.g. a domain whose running instance a revert replaces)."""
        running = []
        for d in self._backend().list_domains(include_inactive=False):
            if d.name == self.config.host_object or d.name in exclude:
                continue
            try:
                running.append((d.name, self.vm_label(d.name), self.resources_of(d.name)))
            except (BackendError, policy.XsmError, policy.LabelError):
                running.append((d.name, self.vm_label(d.name)))
        return self.host.mediator.rebuild(running)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Host-wide: check and hypervisor call happen with nobody else instantiating.

        Re-entrant in one thread: the inner call only re-syncs."""
        with self._thread_lock:
            if getattr(self._held, "depth", 0):
                self._held.depth += 1
                try:
                    self.sync()
                    yield
                finally:
                    self._held.depth -= 1
                return
            fd = os.open(
                os.path.join(self.config.acm_state_dir, "instantiate.lock"),
                os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                0o600,
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._held.depth = 1
                try:
                    self.sync()
                    yield
                finally:
                    self._held.depth = 0
            finally:
                os.close(fd)

    # -- migration ----------------------------------------------------------------------------
    def check_migration(self, name: str, dest_uri: str) -> tuple[bool, str, policy.Verdict | None]:
        """Would the destination admit this domain under *its* policy, beside what runs there?

        The destination's ACM state directory comes from ``acm_peers``; its policy, its
        resource labels and its running domains decide (seed 001: the label travels by name
        and gets the destination's ssidref).  An unknown destination is refused.  Returns
        (admitted, the sentence, the destination's verdict when it refused: the service words
        it for the caller, who may not learn what runs there)."""
        from secured_virt.backends.factory import open_backend

        peers = dict(getattr(self.config, "acm_peers", ()) or ())
        dest_dir = peers.get(dest_uri)
        if dest_dir is None:
            return (
                False,
                f"the sHype/ACM policy of {dest_uri} is unknown, so '{name}' may not go there: "
                f"list it in acm_peers ({dest_uri}=<its ACM state directory>)",
                None,
            )
        label = self.vm_label(name)
        peer = XsmHost(dest_dir, dom0=self.config.host_object)
        xml = self._backend().dumpxml(name, inactive=False)
        disks, _n = vmmeta.domain_devices(xml)
        resources = {}
        for d in disks:
            key = canonical_resource(d)
            resources[key] = peer.resource_get_label(key)
        if getattr(self.config, "backend", "") == "xl":
            # what runs there is known only there: its receiver (svirt-xl-receive, run by the
            # xl backend's transport) checks it under its own lock before xl reads the stream
            v = peer.mediator.check_domain_create(name, label, resources)
            if v.allowed:
                return (
                    True,
                    f"{dest_uri} runs {peer.active.name}, which admits {label}; its receiver "
                    "checks what runs there",
                    None,
                )
            return False, f"at the destination {dest_uri}: {verdict_text(v)}", v
        dest = open_backend("libvirt", dest_uri)
        try:
            running = []
            for d in dest.list_domains(include_inactive=False):
                if d.name in (self.config.host_object, name):
                    continue
                meta = vmmeta.parse(dest.get_metadata(d.name, vmmeta.NS))
                lab = policy.format_label(meta.label_policy, meta.label) if meta.label else None
                running.append((d.name, lab))
        finally:
            dest.close()
        peer.mediator.rebuild(running)
        v = peer.mediator.check_domain_create(name, label, resources)
        if v.allowed:
            return True, f"destination {dest_uri} admits {label} under {peer.active.name}", None
        return False, f"at the destination {dest_uri}: {verdict_text(v)}", v

    # -- checks (call inside exclusive()) -----------------------------------------------------
    def check_instantiate(self, name: str, label: str | None, resources) -> policy.Verdict:
        return self.host.mediator.check_domain_create(name, label, resources)

    def describe(self, name: str) -> dict:
        """The security section of dominfo / list --long."""
        text = self.vm_label(name)
        out = {"display": text, "label": None, "policy": None, "ssidref": None}
        try:
            lab = policy.parse_label(text, self.active.name)
            out["label"], out["policy"] = lab.name, lab.policy
            if lab.policy == self.active.name and lab.name in self.active.vm:
                out["ssidref"] = self.active.ssidref(lab.name)
        except policy.LabelError:
            pass
        return out


def verdict_text(v) -> str:
    """One readable sentence from a policy Verdict / MediationDenied."""
    reason = getattr(v, "reason", "") or str(v)
    rule = getattr(v, "rule", None)
    return f"{rule}: {reason}" if rule else reason
