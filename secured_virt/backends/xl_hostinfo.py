"""The catalogue's monitoring and maintenance operations on Xen's ``xl`` (ids 49-61, 63).

What xl has, it does through argv lists like every other xl call (``xl trigger DOM nmi``,
``xl dump-core``, ``xl vcpu-pin``, ``xl vcpu-list``); what xl does not have is refused with
``unsupported`` and a sentence saying what to use instead - never silently done differently.
Not in xl: per-device block and interface statistics, managed save images, sending key
codes, screenshots, and a domain description.
"""

from __future__ import annotations

from .base import BackendError
from .xl_args import check_name, check_path
from .xl_core import XlCore


def _unsupported(what: str, name: str, instead: str) -> BackendError:
    check_name(name)
    return BackendError("unsupported", f"cannot {what} domain '{name}': xl has no {instead}")


def parse_vcpu_list(text: str) -> list[tuple[int, tuple[int, ...]]]:
    """``xl vcpu-list`` -> [(vcpu, hard affinity cpus)]; ``all`` is reported as ()."""
    out = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 7 or not cols[2].isdigit():
            continue
        hard = cols[6]
        cpus: list[int] = []
        if hard != "all":
            for part in hard.split(","):
                lo, _sep, hi = part.partition("-")
                if lo.isdigit() and (not hi or hi.isdigit()):
                    cpus.extend(range(int(lo), int(hi or lo) + 1))
        out.append((int(cols[2]), tuple(cpus)))
    return out


class XlHostInfo(XlCore):
    """Mixed into XlBackend."""

    def dommemstat(self, name: str) -> dict[str, int]:
        """xl reports a domain's current allocation only (``actual``, KiB)."""
        return {"actual": self.lookup(name).mem_kib}

    def domblkstat(self, name: str, device: str) -> dict[str, int]:
        raise _unsupported("read block statistics of", name, "block statistics (use xentop)")

    def domifstat(self, name: str, device: str) -> dict[str, int]:
        raise _unsupported(
            "read interface statistics of", name, "interface statistics (use xentop)"
        )

    def managed_save(self, name: str) -> None:
        raise _unsupported("managed-save", name, "managed save (use save FILE)")

    def managed_save_remove(self, name: str) -> bool:
        raise _unsupported("remove the managed save of", name, "managed save images")

    def dump(self, name: str, path: str, *, memory_only: bool = False) -> None:
        check_name(name)
        check_path(path, "dump file")
        self._xl("dump", name, ["dump-core", "--", name, path], timeout=self.long_timeout)

    def inject_nmi(self, name: str) -> None:
        check_name(name)
        self._xl("inject an NMI into", name, ["trigger", "--", name, "nmi"])

    def send_key(self, name: str, keys: list[int], *, codeset: str, holdtime: int) -> None:
        raise _unsupported("send keys to", name, "send-key (xl sysrq sends SysRq keys only)")

    def get_description(self, name: str, *, title: bool = False, inactive: bool = False) -> str:
        raise _unsupported("read the description of", name, "domain title or description")

    def set_description(
        self, name: str, text: str, *, title: bool = False, live: bool = True, config: bool = True
    ) -> None:
        raise _unsupported("describe", name, "domain title or description")

    def vcpupin(
        self, name: str, vcpu: int, cpus: tuple[int, ...], *, live: bool, config: bool
    ) -> None:
        check_name(name)
        if config and not live:
            raise BackendError(
                "unsupported",
                f"cannot pin a vCPU of '{name}' in its configuration only: xl pins running "
                "domains (set cpus= in the config file for the next start)",
            )
        cpulist = ",".join(str(c) for c in sorted(set(cpus)))
        self._xl("pin a vCPU of", name, ["vcpu-pin", "--", name, str(int(vcpu)), cpulist])

    def vcpu_pin_info(self, name: str) -> list[tuple[int, tuple[int, ...]]]:
        check_name(name)
        return parse_vcpu_list(self._xl("read the vCPUs of", name, ["vcpu-list", "--", name]))

    def screenshot(self, name: str, screen: int = 0) -> tuple[str, bytes]:
        raise _unsupported("take a screenshot of", name, "screenshots (use a VNC client)")
