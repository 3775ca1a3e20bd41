"""Read a qcow2 image header completely: every other file QEMU would open because of it.

Why: a qcow2 header can make QEMU open more than the image itself.  The backing file is the
well-known case; the *external data file* (incompatible feature bit 2 plus header extension
``0x44415441``) is the other: QEMU opens the named file and serves the guest's reads and
writes from it, so an image that names another tenant's disk or a host file hands that file to
the guest.  A guest can write such a header into its own raw disk, and a user can then attach
the same file again as qcow2, so the header is hostile input: it is parsed here the way QEMU
parses it (``block/qcow2.c``: ``qcow2_do_open``, ``qcow2_read_extensions``), and whatever this
module does not understand is refused rather than guessed.

Refused, because each may make QEMU open something this module cannot vouch for:

* an external data file (the feature bit, or the extension even without the bit);
* incompatible feature bits QEMU knows but this module does not, or that nobody knows yet
  (QEMU refuses unknown ones too, but a newer QEMU might understand them);
* a backing file without a recorded backing format (QEMU and libvirt would then probe the
  backing file's format, and formats such as VMDK name further files), or with any backing
  format other than raw or qcow2;
* anything malformed: versions other than 2 and 3, truncated fields, extensions running past
  their area, names with NUL bytes.

This module only reads; where the files may live is ``secured_virt.confinement.disks``'s job.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass

MAGIC = b"QFI\xfb"

#: incompatible feature bits (qcow2 spec, "incompatible_features")
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
#: the bits that change how the image's own clusters are read, never which files are opened
HARMLESS_INCOMPAT = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2

#: header extension types (qcow2 spec, "Header extensions")
EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_TABLE = 0x6803F857
EXT_BITMAPS = 0x23852875
EXT_CRYPTO = 0x0537BE77
EXT_DATA_FILE = 0x44415441

#: backing formats whose own references to files this project understands
BACKING_FORMATS = ("raw", "qcow2")

V2_HEADER = 72  # bytes; version 3 adds fields up to header_length (at least 104)
V3_MIN_HEADER = 104
MAX_BACKING_NAME = 1023  # QEMU's limit
MAX_FORMAT_NAME = 15  # QEMU keeps the backing format in char[16]
MIN_CLUSTER_BITS, MAX_CLUSTER_BITS = 9, 21


class Qcow2Error(ValueError):
    """A header this module refuses; the message says what is wrong with which file."""


@dataclass(frozen=True, slots=True)
class Qcow2Header:
    """What the header says about files outside the image."""

    version: int
    backing_file: str | None
    backing_format: str | None
    incompatible_features: int


def read_header(path: str) -> Qcow2Header | None:
    """The parsed header of the qcow2 image at ``path``; None if the file does not start with
    the qcow2 magic (or does not exist yet).  Raises Qcow2Error for any header QEMU might
    open other files for that this module does not vouch for.

    Opened with O_NOFOLLOW|O_NONBLOCK so a symlink swapped in for the last component is not
    followed and a FIFO cannot hang the check; only regular files and block devices are read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise Qcow2Error(f"cannot read image {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            return None  # QEMU cannot use it as a qcow2 image either
        return parse(f, path)


def parse(f, path: str = "image") -> Qcow2Header | None:
    """Parse the header from the binary file object ``f`` (see read_header)."""
    head = f.read(V2_HEADER)
    if head[:4] != MAGIC:
        return None
    if len(head) < V2_HEADER:
        raise Qcow2Error(f"image {path}: truncated qcow2 header")
    version, backing_offset, backing_size, cluster_bits = struct.unpack(">IQII", head[4:24])
    if version not in (2, 3):
        raise Qcow2Error(f"image {path}: qcow2 version {version} (only 2 and 3 are accepted)")
    if not MIN_CLUSTER_BITS <= cluster_bits <= MAX_CLUSTER_BITS:
        raise Qcow2Error(f"image {path}: invalid cluster size (2^{cluster_bits} bytes)")
    cluster_size = 1 << cluster_bits
    incompatible, header_length = 0, V2_HEADER
    if version == 3:
        more = f.read(V3_MIN_HEADER - V2_HEADER)
        if len(more) < V3_MIN_HEADER - V2_HEADER:
            raise Qcow2Error(f"image {path}: truncated qcow2 version 3 header")
        incompatible = struct.unpack(">Q", more[0:8])[0]
        header_length = struct.unpack(">I", more[28:32])[0]
        if header_length < V3_MIN_HEADER or header_length > cluster_size:
            raise Qcow2Error(f"image {path}: invalid qcow2 header length {header_length}")
    if incompatible & INCOMPAT_DATA_FILE:
        raise Qcow2Error(
            f"image {path}: its header asks QEMU to keep the data in another file (qcow2 "
            "external data file); only root may use such images"
        )
    unknown = incompatible & ~HARMLESS_INCOMPAT
    if unknown:
        raise Qcow2Error(
            f"image {path}: qcow2 incompatible feature bits {unknown:#x} are not understood "
            "here, so what QEMU would open for them cannot be checked; only root may use it"
        )
    ext_end = backing_offset if backing_offset else cluster_size
    backing_format = _read_extensions(f, path, header_length, min(ext_end, cluster_size))
    backing_file = _read_backing_name(f, path, backing_offset, backing_size, cluster_size)
    if backing_file is not None and backing_format not in BACKING_FORMATS:
        said = f"format '{backing_format}'" if backing_format else "no recorded format"
        raise Qcow2Error(
            f"image {path}: backing file '{backing_file}' has {said}; a backing file must be "
            f"recorded as {' or '.join(BACKING_FORMATS)} (qemu-img rebase -u -F qcow2|raw)"
        )
    return Qcow2Header(version, backing_file, backing_format, incompatible)


def _read_extensions(f, path: str, start: int, end: int) -> str | None:
    """Walk the header extensions like qcow2_read_extensions; return the backing format."""
    backing_format = None
    offset = start
    while offset < end:
        f.seek(offset)
        raw = f.read(8)
        if len(raw) < 8:
            raise Qcow2Error(f"image {path}: truncated qcow2 header extension at {offset}")
        magic, length = struct.unpack(">II", raw)
        offset += 8
        if offset > end or length > end - offset:
            raise Qcow2Error(f"image {path}: qcow2 header extension {magic:#x} is too large")
        if magic == EXT_END:
            return backing_format
        data = f.read(length)
        if len(data) < length:
            raise Qcow2Error(f"image {path}: truncated qcow2 header extension {magic:#x}")
        if magic == EXT_DATA_FILE:
            raise Qcow2Error(
                f"image {path}: its header names an external data file "
                f"'{_text(data, path)}'; only root may use such images"
            )
        if magic == EXT_BACKING_FORMAT:
            if length > MAX_FORMAT_NAME:
                raise Qcow2Error(f"image {path}: backing format name of {length} bytes")
            backing_format = _text(data, path)
        offset += (length + 7) & ~7
    return backing_format


def _read_backing_name(f, path: str, offset: int, size: int, cluster_size: int) -> str | None:
    if offset == 0 or size == 0:
        return None
    if offset > cluster_size:
        raise Qcow2Error(f"image {path}: invalid backing file name offset {offset}")
    if size > min(MAX_BACKING_NAME, cluster_size - offset):
        raise Qcow2Error(f"image {path}: backing file name of {size} bytes")
    f.seek(offset)
    raw = f.read(size)
    if len(raw) != size:
        raise Qcow2Error(f"image {path}: malformed backing file name (file too short)")
    return _text(raw, path)


def _text(raw: bytes, path: str) -> str:
    """A name from the header; a NUL would make QEMU (C strings) read less than we check."""
    if b"\x00" in raw:
        raise Qcow2Error(f"image {path}: malformed name in the qcow2 header (NUL byte)")
    return raw.decode("utf-8", "surrogateescape")
