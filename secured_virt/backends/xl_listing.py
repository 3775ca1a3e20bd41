"""Which domains exist and in what state: ``list_domains``, ``lookup``, ``pinned``, host info.

A domain is known to xl only while it runs; a "shut off" domain is one with a config file and
no xl entry.  This module merges the two views into the DomainInfo records the gate works
with: ``xl list`` for state, memory and CPU time, ``xl list -l`` for UUIDs, maximum memory
and type, and the config directory for persistence, autostart and inactive domains.
"""

from __future__ import annotations

import contextlib

from .base import BackendError, DomainChanged, DomainInfo, NoSuchDomain
from .xl_args import check_name, looks_like_name
from .xl_cfg import XlConfig
from .xl_core import XlCore
from .xl_model import XlDomain
from .xl_parse import XlListEntry, parse_info, parse_list
from .xl_run import says_not_found

DOM0_UUID = "00000000-0000-0000-0000-000000000000"


class XlListing(XlCore):
    """Listing and looking up domains, and describing the host (part of XlBackend)."""

    def _running_info(self, entry: XlListEntry, detail: XlDomain | None) -> DomainInfo:
        named = looks_like_name(entry.name)
        is_dom0 = entry.domid == 0
        persistent = is_dom0 or (named and self._cfg_path(entry.name).is_file())
        uuid = detail.uuid if detail and detail.uuid else (DOM0_UUID if is_dom0 else "")
        return DomainInfo(
            name=entry.name,
            uuid=uuid,
            id=entry.domid,
            state=entry.state,
            max_mem_kib=max(detail.max_mem_kib if detail else 0, entry.mem_mib * 1024),
            mem_kib=entry.mem_mib * 1024,
            vcpus=entry.vcpus,
            cpu_time_ns=round(entry.cpu_seconds * 1e9),
            persistent=persistent,
            autostart=named and not is_dom0 and self._autostart_link(entry.name),
            os_type=detail.os_type if detail else "linux",
        )

    def _inactive_info(self, name: str, cfg: XlConfig) -> DomainInfo:
        dom = XlDomain.from_config(cfg)
        return DomainInfo(
            name=name,
            uuid=dom.uuid,
            id=None,
            state="shut off",
            max_mem_kib=dom.max_mem_kib,
            mem_kib=dom.mem_kib,
            vcpus=dom.vcpus,
            cpu_time_ns=0,
            persistent=True,
            autostart=self._autostart_link(name),
            os_type=dom.os_type,
        )

    def list_domains(self, *, include_inactive: bool = False) -> list[DomainInfo]:
        """``xl list`` for state/memory/time, ``xl list -l`` for UUIDs, maximum memory and type;
        with include_inactive, also every defined config that is not running ("shut off")."""
        entries = parse_list(self._xl("list domains", None, ["list"]))
        details = self._details()
        out = [self._running_info(e, details.get(e.domid)) for e in entries]
        if include_inactive:
            running = {e.name for e in entries}
            for name in self._defined_names():
                if name not in running:
                    cfg = self._config(name)
                    if cfg is not None:
                        out.append(self._inactive_info(name, cfg))
        out.sort(key=lambda d: (d.id is None, d.id or 0, d.name))
        return out

    @contextlib.contextmanager
    def pinned(self, name: str, uuid: str | None):
        """Backend.pinned for xl: the UUID is verified when the block starts.

        xl addresses domains by name or domain id only, so the window between this check and
        the xl command is not closed as libvirt's by-UUID handles close it; it is narrowed
        from "since the request was checked" to one fork.  A name that is neither running
        nor defined passes, as with libvirt's pins: whatever addresses it by name fails with
        "no such domain", and restore (which brings the checked image's domain into being
        under that name) is what needs it, on a host that has never seen the domain.
        """
        if uuid:
            try:
                now = self.lookup(name).uuid
            except NoSuchDomain:
                now = None
            if now and now.lower() != uuid.lower():
                raise DomainChanged(name, uuid)
        yield

    def lookup(self, name: str) -> DomainInfo:
        check_name(name)
        r = self._run(["list", "--", name])
        if r.returncode == 0:
            entries = parse_list(r.stdout)
            if not entries:
                raise BackendError("operation-failed", f"`xl list {name}` printed no domain")
            entry = entries[0]
            return self._running_info(entry, self._details(name).get(entry.domid))
        if says_not_found(f"{r.stderr}{r.stdout}"):
            cfg = self._config(name)
            if cfg is None:
                raise NoSuchDomain(name)
            return self._inactive_info(name, cfg)
        raise self._fail("look up", name, r)

    def hostinfo(self) -> dict:
        info = parse_info(self._xl("read host information from", None, ["info"]))

        def num(key: str) -> int:
            try:
                return int(float(info.get(key, "0")))
            except ValueError:
                return 0

        cores, threads, cpus = num("cores_per_socket"), num("threads_per_core"), num("nr_cpus")
        return {
            "backend": self.name,
            "uri": self.uri,
            "hostname": info.get("host", ""),
            "hypervisor": "Xen",
            "hypervisor_version": info.get("xen_version", ""),
            "cpu_model": info.get("machine", ""),
            "memory_kib": num("total_memory") * 1024,
            "free_memory_kib": num("free_memory") * 1024,
            "cpus": cpus,
            "mhz": num("cpu_mhz"),
            "numa_nodes": num("nr_nodes"),
            "sockets": cpus // (cores * threads) if cores and threads else 0,
            "cores": cores,
            "threads": threads,
            "scheduler": info.get("xen_scheduler", ""),
        }
