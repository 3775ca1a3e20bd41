"""Parsers for what ``xl`` prints: ``xl list``, ``xl list -l``, ``xl info``, save-image headers.

Formats (tools/xl in the Xen tree):

* ``xl list``: a header ``Name  ID  Mem VCPUs\\tState\\tTime(s)`` then one line per domain,
  ``printf("%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f")``: name, domid, memory in MiB,
  online vCPUs, six state flags and CPU seconds.  The flags are r(unning) b(locked)
  p(aused) s(hutdown), a shutdown-reason letter from "-rscwS" (poweroff, reboot, suspend,
  crash, watchdog, soft-reset) and d(ying).
* ``xl list -l``: a JSON array of ``{"domid": N, "config": libxl_domain_config}``.
* ``xl info``: ``key : value`` lines.
* ``xl save`` images: a 32-byte magic, four uint32 (byte order 0x01020304, mandatory flags,
  optional flags, optional data length), then the optional data: uint32 length + the domain
  config (JSON when mandatory flag bit 0 is set, else xl.cfg text), then (xl ignores it)
  secured-virt's owner/label record when the image was saved through us (xl_record).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from .base import BackendError
from .xl_record import BYTEORDER, FLAG_JSON, MAX_HEADER_CONFIG, SAVE_MAGIC, split_optional

__all__ = ["BYTEORDER", "FLAG_JSON", "MAX_HEADER_CONFIG", "SAVE_MAGIC"]


@dataclass(frozen=True, slots=True)
class XlListEntry:
    name: str
    domid: int
    mem_mib: int
    vcpus: int
    flags: str
    cpu_seconds: float

    @property
    def state(self) -> str:
        return state_from_flags(self.flags)


def state_from_flags(flags: str) -> str:
    """virsh's state word for xl's six flag letters (crashed > shutdown > paused > ...)."""
    f = (flags + "------")[:6]
    if f[3] == "s" and f[4] == "c":
        return "crashed"
    if f[3] == "s" or f[5] == "d":
        return "in shutdown"
    if f[2] == "p":
        return "paused"
    if f[1] == "b":
        return "idle"
    if f[0] == "r":
        return "running"
    return "no state"


def parse_list(text: str) -> list[XlListEntry]:
    """Parse plain ``xl list`` output (header line first)."""
    out = []
    lines = text.splitlines()
    if not lines or not lines[0].startswith("Name"):
        raise BackendError("operation-failed", "unexpected `xl list` output (no header line)")
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.rsplit(None, 5)
        if len(parts) != 6:
            raise BackendError(
                "operation-failed", f"unexpected `xl list` output, line {lineno}: {line!r}"
            )
        name, domid, mem, vcpus, flags, cpu = parts
        try:
            out.append(
                XlListEntry(name.strip(), int(domid), int(mem), int(vcpus), flags, float(cpu))
            )
        except ValueError:
            raise BackendError(
                "operation-failed", f"unexpected `xl list` output, line {lineno}: {line!r}"
            ) from None
    return out


def parse_list_long(text: str) -> list[dict]:
    """Parse ``xl list -l`` (JSON array); an empty output is an empty list."""
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BackendError(
            "operation-failed", f"`xl list -l` did not print JSON (line {exc.lineno}): {exc.msg}"
        ) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise BackendError("operation-failed", "`xl list -l` printed JSON of an unexpected shape")
    return data


def parse_info(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True, slots=True)
class SaveHeader:
    mandatory_flags: int
    config: dict | str | None  # JSON config, xl.cfg text, or None when absent
    record: dict | None = None  # secured-virt's owner/label record (xl_record), if stamped

    def domain_name(self) -> str | None:
        if isinstance(self.config, dict):
            return (self.config.get("c_info") or {}).get("name")
        if isinstance(self.config, str):
            from .xl_cfg import XlConfig, XlConfigError

            try:
                name = XlConfig(self.config, "<save image>").get("name")
            except XlConfigError:
                return None
            return name if isinstance(name, str) else None
        return None

    def domain_uuid(self) -> str | None:
        if isinstance(self.config, dict):
            return (self.config.get("c_info") or {}).get("uuid")
        return None


def read_save_header(path: str) -> SaveHeader:
    """Read the xl header and config of a save image (never the memory that follows)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(48)
            if len(head) < 48 or head[:32] != SAVE_MAGIC:
                raise BackendError(
                    "invalid-arg", f"'{path}' is not an xl save image (bad or missing header)"
                )
            order = struct.unpack("<I", head[32:36])[0]
            endian = "<" if order == BYTEORDER else ">"
            if struct.unpack(f"{endian}I", head[32:36])[0] != BYTEORDER:
                raise BackendError("invalid-arg", f"'{path}': unknown byte order in xl header")
            mandatory, _optional, optlen = struct.unpack(f"{endian}III", head[36:48])
            if optlen < 4:
                return SaveHeader(mandatory, None)
            if optlen > MAX_HEADER_CONFIG:
                raise BackendError("invalid-arg", f"'{path}': xl header config is too large")
            opt = fh.read(optlen)
    except OSError as exc:
        raise BackendError(
            "invalid-arg", f"cannot read save image '{path}': {exc.strerror}"
        ) from None
    if len(opt) < optlen:
        raise BackendError("invalid-arg", f"'{path}': save image is truncated")
    config_chunk, record = split_optional(opt, endian, path)
    (cfglen,) = struct.unpack(f"{endian}I", config_chunk[:4])
    raw = config_chunk[4 : 4 + cfglen].rstrip(b"\x00")
    text = raw.decode("utf-8", errors="replace")
    if mandatory & FLAG_JSON:
        try:
            return SaveHeader(mandatory, json.loads(text), record)
        except json.JSONDecodeError:
            raise BackendError(
                "invalid-arg", f"'{path}': the config in the save image is not valid JSON"
            ) from None
    return SaveHeader(mandatory, text, record)
