"""The binary policy Xen's hypervisor loads (ACM_POLICY_VERSION 4, Xen 3.3), packed and unpacked.

Why both directions: packing is what ``getBinary`` and the boot policy need; unpacking lets
``svirt-admin policy binary`` show what a ``.bin`` holds and lets the tests check every offset
and matrix against the XML instead of trusting the packer.

Layout (all big-endian):  acm_policy_buffer header (60 bytes, not padded) | policy reference
(uint32 len incl. NUL, name, NUL) | CHWALL buffer (9 x uint32, ssid matrix, conflict-set
matrix) | STE buffer (5 x uint32, ssid matrix); the last three each padded to 8 bytes.
Header offsets count from the start of the whole buffer; offsets inside a component buffer
count from the start of that component.
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass

from .constants import (
    ACM_CHINESE_WALL_POLICY,
    ACM_CHWALL_VERSION,
    ACM_MAGIC,
    ACM_POLICY_VERSION,
    ACM_SIMPLE_TYPE_ENFORCEMENT_POLICY,
    ACM_STE_VERSION,
)

HEADER = struct.Struct("!iiiiiiiiii20s")
CHWALL_HEADER = struct.Struct("!9I")
STE_HEADER = struct.Struct("!5I")
assert HEADER.size == 60 and CHWALL_HEADER.size == 36 and STE_HEADER.size == 20


def _pad8(buf: bytes) -> bytes:
    return buf + b"\0" * (-len(buf) % 8)


def _matrix(rows, ncols: int) -> bytes:
    """Rows of uint16 as big-endian bytes, row-major."""
    flat = array("H")
    for row in rows:
        if len(row) != ncols:
            raise ValueError("matrix row of the wrong width")
        flat.extend(row)
    if sys.byteorder == "little":
        flat.byteswap()
    return flat.tobytes()


def pack_policy(
    *,
    name: str,
    version: tuple[int, int],
    sha1: bytes,
    chwall_types: int,
    chwall_rows: list[list[int]],
    conflict_rows: list[list[int]],
    ste_types: int,
    ste_rows: list[list[int]],
) -> bytes:
    """Assemble the binary policy from the compiled matrices (rows of 0/1 per type column)."""
    name_b = name.encode("utf-8") + b"\0"
    polref = _pad8(struct.pack("!I", len(name_b)) + name_b)

    ssid_bytes = _matrix(chwall_rows, chwall_types)
    conf_bytes = _matrix(conflict_rows, chwall_types)
    chwall = _pad8(
        CHWALL_HEADER.pack(
            ACM_CHWALL_VERSION,
            ACM_CHINESE_WALL_POLICY,
            chwall_types,
            len(chwall_rows),
            len(conflict_rows),
            CHWALL_HEADER.size,
            CHWALL_HEADER.size + len(ssid_bytes),
            0,  # running types: only filled in by the hypervisor's getpolicy dump
            0,  # conflict aggregate: likewise
        )
        + ssid_bytes
        + conf_bytes
    )
    ste = _pad8(
        STE_HEADER.pack(
            ACM_STE_VERSION,
            ACM_SIMPLE_TYPE_ENFORCEMENT_POLICY,
            ste_types,
            len(ste_rows),
            STE_HEADER.size,
        )
        + _matrix(ste_rows, ste_types)
    )
    primary_off = HEADER.size + len(polref)
    secondary_off = primary_off + len(chwall)
    total = secondary_off + len(ste)
    header = HEADER.pack(
        ACM_MAGIC,
        ACM_POLICY_VERSION,
        total,
        HEADER.size,
        ACM_CHINESE_WALL_POLICY,
        primary_off,
        ACM_SIMPLE_TYPE_ENFORCEMENT_POLICY,
        secondary_off,
        version[0],
        version[1],
        sha1,
    )
    return header + polref + chwall + ste


@dataclass(frozen=True)
class BinaryPolicy:
    """What a binary policy says, decoded."""

    magic: int
    policy_version: int
    length: int
    name: str
    primary_code: int
    secondary_code: int
    primary_offset: int
    secondary_offset: int
    xml_version: tuple[int, int]
    sha1: bytes
    chwall_max_types: int
    chwall_rows: list[list[int]]
    conflict_rows: list[list[int]]
    ste_max_types: int
    ste_rows: list[list[int]]

    def as_dict(self) -> dict:
        return {
            "magic": f"{self.magic:08x}",
            "policy_version": self.policy_version,
            "length": self.length,
            "name": self.name,
            "primary": self.primary_code,
            "secondary": self.secondary_code,
            "xml_version": f"{self.xml_version[0]}.{self.xml_version[1]}",
            "sha1": self.sha1.hex(),
            "chwall": {
                "types": self.chwall_max_types,
                "ssids": self.chwall_rows,
                "conflict_sets": self.conflict_rows,
            },
            "ste": {"types": self.ste_max_types, "ssids": self.ste_rows},
        }


class BinaryPolicyError(ValueError):
    """A buffer is not a binary policy this module understands."""


def _rows(buf: bytes, off: int, nrows: int, ncols: int) -> list[list[int]]:
    n = nrows * ncols
    end = off + 2 * n
    if off < 0 or end > len(buf):
        raise BinaryPolicyError("matrix runs past the end of the buffer")
    flat = struct.unpack_from(f"!{n}H", buf, off)
    return [list(flat[r * ncols : (r + 1) * ncols]) for r in range(nrows)]


def unpack_policy(buf: bytes) -> BinaryPolicy:
    """Decode a binary policy; raises BinaryPolicyError with what is wrong."""
    if len(buf) < HEADER.size:
        raise BinaryPolicyError(f"{len(buf)} bytes is shorter than the 60-byte header")
    (magic, pver, length, ref_off, pcode, poff, scode, soff, major, minor, sha1) = (
        HEADER.unpack_from(buf, 0)
    )
    if magic != ACM_MAGIC:
        raise BinaryPolicyError(f"bad magic {magic:#010x} (expected {ACM_MAGIC:#010x})")
    if pver != ACM_POLICY_VERSION:
        raise BinaryPolicyError(f"policy version {pver}, this reader knows {ACM_POLICY_VERSION}")
    if length != len(buf):
        raise BinaryPolicyError(f"header says {length} bytes, buffer has {len(buf)}")
    (name_len,) = struct.unpack_from("!I", buf, ref_off)
    name = buf[ref_off + 4 : ref_off + 4 + name_len].rstrip(b"\0").decode("utf-8")
    if pcode != ACM_CHINESE_WALL_POLICY or scode != ACM_SIMPLE_TYPE_ENFORCEMENT_POLICY:
        raise BinaryPolicyError(f"unsupported policy codes primary={pcode} secondary={scode}")
    (_v, _c, cw_types, cw_ssids, cw_sets, cw_ssid_off, cw_sets_off, _rt, _agg) = (
        CHWALL_HEADER.unpack_from(buf, poff)
    )
    (_v, _c, ste_types, ste_ssids, ste_ssid_off) = STE_HEADER.unpack_from(buf, soff)
    return BinaryPolicy(
        magic=magic,
        policy_version=pver,
        length=length,
        name=name,
        primary_code=pcode,
        secondary_code=scode,
        primary_offset=poff,
        secondary_offset=soff,
        xml_version=(major, minor),
        sha1=sha1,
        chwall_max_types=cw_types,
        chwall_rows=_rows(buf, poff + cw_ssid_off, cw_ssids, cw_types),
        conflict_rows=_rows(buf, poff + cw_sets_off, cw_sets, cw_types),
        ste_max_types=ste_types,
        ste_rows=_rows(buf, soff + ste_ssid_off, ste_ssids, ste_types),
    )
