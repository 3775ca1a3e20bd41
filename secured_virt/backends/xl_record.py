"""secured-virt's record (owner, label name, policy name) inside an xl save image's header.

Seed 001's point is that a domain's label travels with the domain, as names, and becomes a
local ssidref only where the domain is instantiated.  libvirt carries our metadata inside the
domain XML of its save images; xl's images carry libxl's JSON config instead, which has no
room for it (``xl save`` turns even an override config file into that JSON, dropping keys it
does not know, so ``access_control`` never reaches the image).  So the record goes where xl
leaves room: the header's *optional data*.  xl reads the config chunk at its start and
ignores whatever follows it (tools/xl, restore: only ``config_len`` bytes are taken), so a
second chunk after it is invisible to xl and read by us::

    optional data = u32 config_len | config (JSON, NUL-terminated) | RECORD_MAGIC | u32 len |
                    record JSON | zero padding

Stamping rewrites only the header when it can: the JSON xl writes is indented, and the same
JSON written compactly leaves room for the record within the same ``optional_data_len``, so
the memory image after it never moves.  When there is not enough room (or the config is
xl.cfg text, which we never rewrite) the image is copied once into a new file with a longer
header, in the same directory, then renamed over the original.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct

from .base import BackendError
from .xl_files import replacing

# xl's save-image header (tools/xl: struct save_file_header); xl_parse reads the rest
SAVE_MAGIC = b"Xen saved domain, xl format\n \x00 \r"
FLAG_JSON = 1
BYTEORDER = 0x01020304
MAX_HEADER_CONFIG = 4 * 1024 * 1024

RECORD_MAGIC = b"secured-virt:vm\n"
RECORD_VERSION = 1
MAX_RECORD = 4096
_HEAD = 48
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}\Z")
_OWNER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.@-]{0,63}\Z")


def make_record(
    name: str,
    uuid: str,
    owner: str | None,
    label_policy: str | None,
    label: str | None,
) -> dict:
    """The record for one domain (validated: what we write, we can read back)."""
    rec: dict = {"version": RECORD_VERSION, "name": name, "uuid": uuid}
    if owner:
        rec["owner"] = owner
    if label:
        rec["label"] = {"policy": label_policy or "", "name": label}
    check_record(rec, "<new record>")
    return rec


def check_record(rec, where: str) -> dict:
    """The record if well-formed; otherwise a BackendError naming where it came from.

    A malformed record is refused, never read as "no label": a domain whose label cannot be
    read must not come back unlabelled."""

    def bad(why: str) -> BackendError:
        return BackendError(
            "invalid-arg",
            f"{where}: secured-virt's record in the save image is unreadable ({why}); the "
            "domain's label cannot be known, so it is not restored from this image",
        )

    if not isinstance(rec, dict) or rec.get("version") != RECORD_VERSION:
        raise bad("unknown version")
    if not isinstance(rec.get("name"), str) or not isinstance(rec.get("uuid"), str):
        raise bad("no domain name or UUID")
    owner = rec.get("owner")
    if owner is not None and (not isinstance(owner, str) or not _OWNER.match(owner)):
        raise bad(f"invalid owner {owner!r}")
    label = rec.get("label")
    if label is not None:
        if not isinstance(label, dict):
            raise bad("label is not a (policy, name) pair")
        for key in ("policy", "name"):
            v = label.get(key)
            if not isinstance(v, str) or not _NAME.match(v):
                raise bad(f"invalid label {key} {v!r}")
    return rec


def _endian(order_bytes: bytes) -> str:
    if struct.unpack("<I", order_bytes)[0] == BYTEORDER:
        return "<"
    if struct.unpack(">I", order_bytes)[0] == BYTEORDER:
        return ">"
    raise BackendError("invalid-arg", "unknown byte order in the xl save image header")


def split_optional(opt: bytes, endian: str, where: str) -> tuple[bytes, dict | None]:
    """(the config chunk with its length word, our record or None) of an optional-data block."""
    if len(opt) < 4:
        return opt, None
    (cfglen,) = struct.unpack(f"{endian}I", opt[:4])
    end = 4 + cfglen
    if end > len(opt):
        raise BackendError("invalid-arg", f"'{where}': save image is truncated")
    rest = opt[end:]
    if not rest.startswith(RECORD_MAGIC):
        return opt[:end], None  # nothing of ours (xl itself ignores what follows its config)
    body = rest[len(RECORD_MAGIC) :]
    if len(body) < 4:
        raise BackendError("invalid-arg", f"'{where}': secured-virt's record is truncated")
    (rlen,) = struct.unpack(f"{endian}I", body[:4])
    if rlen > MAX_RECORD or 4 + rlen > len(body):
        raise BackendError("invalid-arg", f"'{where}': secured-virt's record is truncated")
    try:
        rec = json.loads(body[4 : 4 + rlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        rec = None
    return opt[:end], check_record(rec, where)


def _record_chunk(rec: dict, endian: str) -> bytes:
    data = json.dumps(rec, sort_keys=True, separators=(",", ":")).encode()
    return RECORD_MAGIC + struct.pack(f"{endian}I", len(data)) + data


def _compact_config(config_chunk: bytes, endian: str, json_flag: bool) -> bytes:
    """The config chunk with its JSON written compactly (same meaning, fewer bytes)."""
    if not json_flag or len(config_chunk) < 4:
        return config_chunk
    raw = config_chunk[4:].rstrip(b"\x00")
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return config_chunk
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\x00"
    if json.loads(compact[:-1].decode("utf-8")) != value or len(compact) > len(config_chunk) - 4:
        return config_chunk
    return struct.pack(f"{endian}I", len(compact)) + compact


def stamp(path: str, rec: dict) -> None:
    """Put rec into the header of the xl save image at path (replacing an earlier record)."""
    check_record(rec, path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise BackendError(
            "operation-failed", f"cannot open save image '{path}': {exc.strerror}"
        ) from None
    try:
        head = os.pread(fd, _HEAD, 0)
        if len(head) < _HEAD or head[:32] != SAVE_MAGIC:
            raise BackendError("invalid-arg", f"'{path}' is not an xl save image")
        endian = _endian(head[32:36])
        mandatory, optional, optlen = struct.unpack(f"{endian}III", head[36:48])
        if optlen > MAX_HEADER_CONFIG:
            raise BackendError("invalid-arg", f"'{path}': xl header config is too large")
        opt = os.pread(fd, optlen, _HEAD)
        if len(opt) < optlen:
            raise BackendError("invalid-arg", f"'{path}': save image is truncated")
        config, _old = split_optional(opt, endian, path)
        if not config:
            config = struct.pack(f"{endian}I", 0)
        chunk = _record_chunk(rec, endian)
        compact = _compact_config(config, endian, bool(mandatory & FLAG_JSON))
        if len(compact) + len(chunk) <= optlen:
            new_opt = compact + chunk
            os.pwrite(fd, new_opt + b"\x00" * (optlen - len(new_opt)), _HEAD)
            os.fsync(fd)
            return
        new_opt = config + chunk
        new_head = head[:36] + struct.pack(f"{endian}III", mandatory, optional, len(new_opt))
        _rewrite(fd, path, new_head + new_opt, _HEAD + optlen)
    finally:
        os.close(fd)


def _rewrite(fd: int, path: str, header: bytes, body_offset: int) -> None:
    """Copy the image into a new file with ``header`` in front of its body, then rename it
    over path (same directory, same mode; the original stays whole until the rename)."""
    st = os.fstat(fd)
    with replacing(path, ".stamp") as out, os.fdopen(os.dup(fd), "rb") as src:
        out.write(header)
        src.seek(body_offset)
        shutil.copyfileobj(src, out, 1024 * 1024)
        os.fchmod(out.fileno(), st.st_mode & 0o777)
        with contextlib.suppress(PermissionError):
            os.fchown(out.fileno(), st.st_uid, st.st_gid)
