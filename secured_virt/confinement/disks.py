"""Which host files a non-root caller's domain may use as disks.

Why: libvirt and xl open disk images as root (and libvirt hands them to QEMU, relabelling
them for it).  A user allowed to define or attach disks to their own VM could otherwise name
``/dev/sda``, ``/etc/shadow`` or another tenant's image and read or write it from inside the
guest.  The sHype/ACM resource labels limit what a *labelled* domain may share, but only when
``acm = yes`` and only for labelled resources; this check holds whatever the mandatory policy.

The rule, for definitions and attachments made by anyone but root acting as themselves:

* a disk is a ``file`` or ``block`` disk; network, volume, directory and other disk types
  reach things this check cannot see, so only root may use them;
* every source path is absolute and, with symlinks resolved, lies inside one of the configured
  ``disk_dirs`` (default ``/var/lib/libvirt/images``);
* the image format is raw or qcow2 (the formats whose references to other files this module
  understands), and a qcow2 image's backing chain, read from the image headers, stays inside
  ``disk_dirs`` too (the classic trick: a qcow2 file whose backing file is ``/etc/shadow``);
* a backing chain or a mirror is never taken from the XML: the hypervisor reads it from the
  image, where it was checked.

The directories are trusted: they should be writable only by root (or whoever prepares
images), since a user able to replace an image by a symlink between this check and the
hypervisor's open would defeat any check done from outside the hypervisor.
"""

from __future__ import annotations

import os
import struct

from lxml import etree

#: disk types a non-root caller may use: a host file or a host block device
USER_DISK_TYPES = ("file", "block")
#: image formats whose references to other files we can check (None: libvirt's default, raw)
USER_FORMATS = (None, "raw", "qcow2")
QCOW2_MAGIC = b"QFI\xfb"
#: deeper qcow2 chains are refused (QEMU's own limit is in the same range)
MAX_CHAIN = 16


class DiskPolicyError(ValueError):
    """A disk a non-root caller may not use; the message says which and why."""


def check_domain_disks(root: etree._Element, dirs) -> None:
    """Raise DiskPolicyError unless every <disk> of domain XML ``root`` follows the rule."""
    for disk in root.iterfind("devices/disk"):
        check_disk(disk, dirs)


def check_disk(disk: etree._Element, dirs) -> None:
    """Raise DiskPolicyError unless this <disk> element follows the module's rule."""
    line = f"line {disk.sourceline}: " if disk.sourceline else ""
    target = (disk.find("target").get("dev") if disk.find("target") is not None else None) or "?"
    what = f"{line}disk {target}"
    dtype = disk.get("type", "file")
    for tag in ("backingStore", "mirror"):
        el = disk.find(tag)
        if el is not None and len(el):
            raise DiskPolicyError(
                f"{what}: a <{tag}> is only allowed in definitions made by root; the "
                "hypervisor reads an image's backing chain from the image itself"
            )
    sources = disk.findall("source")
    paths = [s.get("file") or s.get("dev") for s in sources]
    if dtype not in USER_DISK_TYPES:
        if not sources:  # e.g. an empty CD-ROM drive of another type: nothing on the host
            return
        raise DiskPolicyError(
            f"{what}: disks of type '{dtype}' are only allowed in definitions made by root; "
            f"use a {' or '.join(USER_DISK_TYPES)} disk inside {_shown(dirs)}"
        )
    fmt = disk.find("driver").get("type") if disk.find("driver") is not None else None
    for path in paths:
        if path is None:
            raise DiskPolicyError(
                f"{what}: a {dtype} disk names its source with "
                f"{'file' if dtype == 'file' else 'dev'}=PATH"
            )
        check_image(path, fmt, dirs, what)


def check_image(path: str, fmt: str | None, dirs, what: str = "disk") -> None:
    """Raise DiskPolicyError unless image ``path`` of format ``fmt`` (and, for qcow2, its
    backing chain) lies inside ``dirs``."""
    if fmt not in USER_FORMATS:
        raise DiskPolicyError(
            f"{what}: image format '{fmt}' is only allowed in definitions made by root; "
            "use raw or qcow2"
        )
    real = inside(path, dirs, what)
    if fmt == "qcow2":
        chain = [real]
        for _depth in range(MAX_CHAIN):
            backing = qcow2_backing_file(chain[-1])
            if backing is None:
                return
            if ":" in backing.split("/", 1)[0]:  # nbd:..., json:{...}, http://...
                raise DiskPolicyError(
                    f"{what}: {chain[-1]} has backing file '{backing}', a protocol rather than "
                    "a file; only root may use such images"
                )
            if not backing.startswith("/"):
                backing = os.path.join(os.path.dirname(chain[-1]), backing)
            chain.append(inside(backing, dirs, f"{what}: backing file of {chain[-1]}"))
        raise DiskPolicyError(f"{what}: backing chain of {path} is deeper than {MAX_CHAIN}")


def inside(path: str, dirs, what: str) -> str:
    """``path`` with symlinks resolved, if it lies inside one of ``dirs``; else an error."""
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        raise DiskPolicyError(f"{what}: source {path!r} must be an absolute path")
    real = os.path.realpath(path)
    for d in dirs:
        top = os.path.realpath(d)
        if real != top and os.path.commonpath((real, top)) == top:
            return real
    shown = path if real == path else f"{path} (which is {real})"
    raise DiskPolicyError(
        f"{what}: {shown} is outside the image directories {_shown(dirs)}; ask root to put "
        "the image there (disk_dirs in secured-virt.conf)"
    )


def qcow2_backing_file(path: str) -> str | None:
    """The backing file name recorded in a qcow2 header, or None (no file, not qcow2, none)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None  # defined before the image exists: checked again when attached/defined
    except OSError as exc:
        raise DiskPolicyError(f"cannot read image {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        head = f.read(20)
        if len(head) < 20 or head[:4] != QCOW2_MAGIC:
            return None
        offset, size = struct.unpack(">QI", head[8:20])
        if offset == 0 or size == 0:
            return None
        if size > 1023:  # QEMU's limit for the name
            raise DiskPolicyError(f"image {path}: backing file name of {size} bytes")
        f.seek(offset)
        raw = f.read(size)
    name = raw.decode("utf-8", "replace")
    if "\x00" in name or len(raw) != size:
        raise DiskPolicyError(f"image {path}: malformed backing file name")
    return name


def _shown(dirs) -> str:
    return ", ".join(dirs) if dirs else "(none configured)"
