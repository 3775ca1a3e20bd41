"""Each realm's images: its storage pool's volumes (vol-list, vol-info, vol-create-as,
vol-delete), the realm's quotas, and what a VM's disks name in pools.

Why here and not as files: a realm's images live in one libvirt directory pool (root's
realms file: ``<Storage pool=... path=...>``), defined and started by root's set-up
(``svirt-admin realm storage|create``: ``_realm_storage_setup``).  Its members create and
delete images there themselves, through svirtd, without root: the RBAC object of a volume
operation is the pool (``<VM name="POOL"/>`` or ``type="all"`` in PA), and the realm step
lets a member reach only the pools of their realms, whatever the grant says.  A volume name is
one directory entry, never a path (the test driver would put ``../x`` outside the pool).

Quotas (``secured_virt.tenancy.quotas``) are checked right before the action under one lock,
so two concurrent requests cannot both take the realm's last share: ``realm_quota`` for VMs
(define, create, start, restore, revert, and a raise by setvcpus, setmem or setmaxmem) and
``volume_quota`` for vol-create-as.  That lock is host-wide (``fsutil.HostLock`` on
``<realm_state_dir>/quota.lock``): svirtd's worker processes and root's direct svirsh each
check and act under it, so a tenant cannot win the last share twice by sending its requests
to two processes at once.
"""

from __future__ import annotations

import contextlib
import os
import threading

from secured_virt.access.gate import Target
from secured_virt.backends.base import BackendError
from secured_virt.fsutil import HostLock
from secured_virt.requests import EXIT_DENIED, EXIT_FAILED, EXIT_USAGE, Reply

from . import mediation
from .errors import UserError

#: the quota lock of each realm state directory (see ``quota_lock``)
_QUOTA_LOCKS: dict[str, HostLock] = {}
_QUOTA_LOCKS_GUARD = threading.Lock()
QUOTA_LOCK_FILE = "quota.lock"


def _merged(args, fields: tuple[str, ...]) -> dict:
    """virsh's options that may also be given by position (``vol-create-as POOL NAME SIZE``
    or ``--pool POOL --name NAME --capacity SIZE``): the options given, then the positional
    words fill the rest in order."""
    out = {f: args.get(f + "_opt") for f in fields}
    words: list = []  # positional words pushed along by an option given for their place
    for f in fields:
        w = args.get(f)
        if w is None:
            continue
        if out[f] is None and not words:
            out[f] = w
        else:
            words.append(w)
    for f in fields:
        if out[f] is None and words:
            out[f] = words.pop(0)
    if words:
        raise UserError(f"unexpected argument '{words[0]}'", EXIT_USAGE)
    return out


def quota_lock(config) -> HostLock:
    """The host-wide quota lock of ``config``'s realm state directory (one object per path,
    so the threads of this process queue on its thread lock before the flock)."""
    path = os.path.join(
        getattr(config, "realm_state_dir", "/var/lib/secured-virt/realms"), QUOTA_LOCK_FILE
    )
    with _QUOTA_LOCKS_GUARD:
        lock = _QUOTA_LOCKS.get(path)
        if lock is None:
            lock = _QUOTA_LOCKS[path] = HostLock(path)
        return lock


class VolumeCommands:
    """Mixed into ``Service`` (see ``facade``)."""

    # -- the pool a request names ------------------------------------------------------------
    def _default_pool(self, ident, command: str) -> str:
        """No pool named: the caller's realm's pool, when they are in exactly one realm."""
        if self.tenancy and not self._privileged(ident):
            mine = self.tenancy.realms_of(self._realm_user(ident))
            pools = [self.tenancy.realms.get(r).pool for r in mine]
            pools = [p for p in pools if p]
            if len(pools) == 1:
                return pools[0]
        raise UserError(f"{command}: a storage pool is required (--pool POOL)", EXIT_USAGE)

    def _pool_target(self, pool: str) -> Target:
        if not isinstance(pool, str) or not pool:
            raise UserError("a storage pool name is required", EXIT_USAGE)
        attrs = {}
        if self.tenancy:
            pr = self.tenancy.pool_realm(pool)
            if pr:
                attrs["realm"] = pr
        try:
            self.backend.pool_info(pool)
            exists = True
        except BackendError as exc:
            if exc.code not in ("no-pool", "invalid-arg"):
                raise
            exists = False
        return Target(pool, None, attrs, exists=exists)

    def _pool_realm_check(self, ident, op, target: Target):
        """The ``realm`` step of a volume operation (its target is a pool)."""
        if self.realm_error is not None and not self._privileged(ident):
            why = f"the realms file does not load ({self.realm_error}); only root may act"
            return lambda: why
        if not self.tenancy:
            return None
        return lambda: self.tenancy.pool_refusal(
            self._realm_user(ident),
            root=self._privileged(ident),
            op_name=op.name,
            pool=target.name,
        )

    def _vol_gated(self, ident, op_name: str, pool: str, interaction, action, performs=()):
        target = self._pool_target(pool)
        if not target.exists:

            def action():  # told only to those the gate let through
                raise BackendError("no-pool", f"storage pool '{pool}' not found")

        return self._gated(ident, self._op(op_name), target, interaction, action, performs=performs)

    def _vol_and_pool(self, ident, command: str, args) -> tuple[str, str]:
        """(pool, volume name) of vol-info/vol-delete: ``--pool P VOL``, or VOL as a path."""
        f = _merged(args, ("vol",))
        vol, pool = f["vol"], args.get("pool")
        if not isinstance(vol, str) or not vol:
            raise UserError(f"{command}: a volume is required (--vol VOL)", EXIT_USAGE)
        if pool is None and vol.startswith("/"):
            try:
                found = self.backend.vol_by_path(vol)
            except BackendError as exc:
                if exc.code != "no-volume":
                    raise
                # nothing there: decided against the pool of the realm whose storage holds
                # the path (the caller learns it is missing only if they may look there)
                realm = self.tenancy.realms.realm_of_path(vol) if self.tenancy else None
                r = self.tenancy.realms.get(realm) if realm else None
                if r is None or not r.pool:
                    raise UserError(str(exc), EXIT_FAILED) from None
                return r.pool, vol
            return found.pool, vol
        if pool is None:
            pool = self._default_pool(ident, command)
        return pool, vol

    # -- the commands -------------------------------------------------------------------------
    def _cmd_vol_list(self, ident, args, interaction) -> Reply:
        f = _merged(args, ("pool",))
        pool = f["pool"] or self._default_pool(ident, "vol-list")

        def act():
            vols = self.backend.vol_list(pool)
            return {"pool": pool, "volumes": [v.as_dict() for v in vols]}

        return self._vol_gated(ident, "vol-list", pool, interaction, act)

    def _cmd_vol_info(self, ident, args, interaction) -> Reply:
        pool, vol = self._vol_and_pool(ident, "vol-info", args)

        def act():
            return self.backend.vol_info(pool, _name_of(vol, pool, self.backend)).as_dict()

        return self._vol_gated(ident, "vol-info", pool, interaction, act)

    def _cmd_vol_delete(self, ident, args, interaction) -> Reply:
        pool, vol = self._vol_and_pool(ident, "vol-delete", args)

        def act():
            self.backend.vol_delete(pool, _name_of(vol, pool, self.backend))
            return {"message": f"Vol {vol} deleted"}

        return self._vol_gated(ident, "vol-delete", pool, interaction, act)

    def _cmd_vol_create_as(self, ident, args, interaction) -> Reply:
        from secured_virt.backends.libvirt_storage import VOL_FORMATS, check_vol_name
        from secured_virt.tenancy import quotas

        f = _merged(args, ("pool", "name", "capacity"))
        pool = f["pool"] or self._default_pool(ident, "vol-create-as")
        name, fmt = f["name"], args.get("format")
        if name is None or f["capacity"] is None:
            raise UserError("vol-create-as: a volume name and a capacity are required", EXIT_USAGE)
        try:
            check_vol_name(name)
        except BackendError as exc:
            raise UserError(f"vol-create-as: {exc}", EXIT_USAGE) from None
        try:
            capacity = quotas.scaled(f["capacity"])
            alloc = args.get("allocation")
            allocation = quotas.scaled(alloc) if alloc is not None else None
        except ValueError as exc:
            raise UserError(f"vol-create-as: {exc}", EXIT_USAGE) from None
        if fmt is not None and fmt not in VOL_FORMATS:
            raise UserError(
                f"vol-create-as: format '{fmt}' is not one of {', '.join(VOL_FORMATS)}",
                EXIT_USAGE,
            )

        def act():
            realm = self.tenancy.pool_realm(pool) if self.tenancy else ""
            r = self.tenancy.realms.get(realm) if realm else None
            owner = None
            if r is not None and getattr(r, "qemu_uid", None) is not None:
                owner = (r.qemu_uid, r.qemu_gid)  # the realm's QEMU user (sVirt, DAC)
            with quota_lock(self.config):
                if r is not None and r.quota.bytes is not None:
                    vols = self.backend.vol_list(pool, refresh=True)  # hand-made files count
                    have = {v.name: v.capacity for v in vols}
                    why = quotas.bytes_refusal(realm, r.quota, have, name, capacity)
                    if why:
                        raise UserError(f"vol-create-as: {why}", EXIT_DENIED)
                self.backend.vol_create_as(
                    pool, name, capacity, allocation=allocation, fmt=fmt, owner=owner
                )
            return {"message": f"Vol {name} created"}

        return self._vol_gated(
            ident, "vol-create-as", pool, interaction, act, performs=(mediation.VOLUME_QUOTA,)
        )

    # -- root's set-up of a realm's pool ------------------------------------------------------
    def _realm_storage_setup(self, realm) -> list[str]:
        """Define, build, start and autostart ``realm``'s directory pool where missing;
        what was done, as sentences (nothing: it was all there)."""
        if not realm.pool or not realm.path:
            return []
        _pool, done = self.backend.ensure_dir_pool(realm.pool, realm.path)
        return done

    def _realm_pool_ready(self, name: str) -> list[str]:
        """``svirt-admin realm create|setup``: the realm's pool made ready (what was done, or
        why it could not be: the realms file is written either way, and setup again retries)."""
        realm = self.tenancy.realms.get(name) if self.tenancy else None
        if realm is None:
            return []
        try:
            return self._realm_storage_setup(realm)
        except BackendError as exc:
            return [f"its storage pool '{realm.pool}' is not ready ({exc}); fix it and run "
                    f"svirt-admin realm setup {name} again"]  # fmt: skip

    # -- what a VM's disks name (realm_resources) -----------------------------------------------
    def _disk_refs(self, eff) -> tuple[list[str], list[tuple[str, str]]]:
        """(host paths, (pool, volume) pairs) the request's definition or device names: file
        and block paths with the qcow2 backing chain of each image (an image of this realm
        whose backing file is another realm's would reach it), and the volumes of
        ``<disk type='volume'>`` with the path libvirt resolves them to."""
        from secured_virt.confinement import disks, sources, vmmeta

        if eff.device is not None:
            xml = f"<domain><name>x</name><devices>{eff.device}</devices></domain>"
        elif eff.domain_xml is not None:
            xml = eff.domain_xml
        else:
            return [], []
        root = vmmeta.parse_domain_xml(xml)
        paths: list[str] = []
        pools: list[tuple[str, str]] = []
        for disk in root.iterfind("devices/disk"):
            src = sources.disk_source(disk)
            if src is None or src[0] == "network":
                continue
            dtype, value = src
            if dtype == "volume":
                pool, _sep, vol = value.partition("/")
                pools.append((pool, vol))
                with contextlib.suppress(BackendError):  # a missing volume fails at start
                    paths.append(self.backend.vol_info(pool, vol).path)
                continue
            paths.append(value)
            current, seen = value, 0
            while seen < disks.MAX_CHAIN:  # the chain as QEMU would follow it
                try:
                    backing = disks.qcow2_backing_file(current)
                except (OSError, ValueError):
                    break
                if not backing:
                    break
                current = os.path.join(os.path.dirname(current), backing)
                paths.append(os.path.normpath(current))
                seen += 1
        return paths, pools

    # -- realm_quota ------------------------------------------------------------------------------
    def _quota_guarded(self, op_name: str, target: Target, lazy, action):
        """``action`` run under the quota lock once the VM's realm's quota admits it."""
        from secured_virt.tenancy import quotas

        eff = lazy.get()
        realm = self._vm_realm_of_quota(target, eff)
        r = self.tenancy.realms.get(realm) if realm else None
        q = r.quota if r is not None else None
        if q is None or (q.vms, q.vcpus, q.memory) == (None, None, None):
            return action
        if eff.resize is not None:  # setvcpus, setmem, setmaxmem
            return self._resize_guarded(op_name, target, realm, q, eff.resize, action)
        defines = op_name == "define"
        runs = op_name != "define" and eff.instantiates

        def guarded():
            with quota_lock(self.config):
                usage = self._realm_usage(realm)
                xml = eff.domain_xml
                if xml is None:
                    xml = self.backend.dumpxml(target.name)
                try:
                    size = quotas.domain_size(xml)
                except Exception as exc:
                    raise UserError(
                        f"{op_name}: cannot read the VM's size: {exc}", EXIT_FAILED
                    ) from None
                name = target.name
                why = quotas.vm_refusal(
                    realm,
                    q,
                    usage,
                    name,
                    size=size,
                    adds_vm=name not in usage.vms,
                    runs=runs and not (usage.vms.get(name) and not eff.replaces_running),
                    defines=defines,
                )
                if why:
                    raise UserError(f"{op_name}: {why}", EXIT_DENIED)
                return action()

        return guarded

    def _resize_guarded(self, op_name: str, target: Target, realm: str, q, resize, action):
        """``action`` (a change of amount) run under the quota lock once the definitions it
        reaches still fit ``realm``'s quota: the persistent one alone, as define checks it; the
        running one beside the realm's other running VMs, as start checks it (the same
        ``_realm_usage``).  The sizes are read under the lock, pinned to the VM checked."""
        from secured_virt.tenancy import quotas

        name = target.name

        def guarded():
            with quota_lock(self.config), self.backend.pinned(name, target.uuid):
                running = self.backend.lookup(name).id is not None
                for side in resize.sides(running):
                    try:
                        xml = self.backend.dumpxml(name, inactive=side == "config")
                        before, after = quotas.resized(xml, resize)
                    except BackendError:
                        raise
                    except Exception as exc:
                        raise UserError(
                            f"{op_name}: cannot read the VM's size: {exc}", EXIT_FAILED
                        ) from None
                    if after[0] <= before[0] and after[1] <= before[1]:
                        continue  # raises nothing: never refused (a VM may always shrink)
                    live = side == "live"
                    why = quotas.resize_refusal(
                        realm,
                        q,
                        self._realm_usage(realm) if live else quotas.Usage(),
                        name,
                        before=before,
                        after=after,
                        running=live,
                    )
                    if why:
                        raise UserError(f"{op_name}: {why}", EXIT_DENIED)
                return action()

        return guarded

    def _vm_realm_of_quota(self, target: Target, eff) -> str:
        attrs = dict(target.attrs or {})
        meta = eff.meta
        if meta is not None and getattr(meta, "realm", None):
            attrs["realm"] = meta.realm
        try:
            return self.tenancy.vm_realm(target.name, attrs)
        except Exception:  # a conflicted VM was refused by the realm step
            return ""

    def _realm_usage(self, realm: str):
        """The realm's VMs now (name -> running) and each running VM's size, from the
        hypervisor (never from a cache: the quota is about what is there)."""
        from secured_virt.tenancy import quotas

        usage = quotas.Usage()
        for d in self.backend.list_domains(include_inactive=True):
            try:
                if self.tenancy.vm_realm(d.name, self._meta(d.name).attrs()) != realm:
                    continue
            except Exception:  # noqa: S112 - a conflicted VM belongs to no realm's count
                continue
            usage.vms[d.name] = d.active
            if d.active:
                try:
                    usage.running[d.name] = quotas.domain_size(self.backend.dumpxml(d.name))
                except Exception:
                    usage.running[d.name] = (d.vcpus, d.max_mem_kib * 1024)
        return usage


def _name_of(vol: str, pool: str, backend) -> str:
    """The volume's name in ``pool``: ``vol`` itself, or the name of the volume at path
    ``vol`` (which must be in that pool)."""
    if not vol.startswith("/"):
        return vol
    found = backend.vol_by_path(vol)
    if found.pool != pool:
        raise UserError(f"volume '{vol}' is in pool '{found.pool}', not in '{pool}'", EXIT_DENIED)
    return found.name
