"""Which host files a non-root caller's domain may use as disks.

Why: libvirt and xl open disk images as root (and libvirt hands them to QEMU, relabelling
them for it).  A user allowed to define or attach disks to their own VM could otherwise name
``/dev/sda``, ``/etc/shadow`` or another tenant's image and read or write it from inside the
guest.  The sHype/ACM resource labels limit what a *labelled* domain may share, but only when
``acm = yes`` and only for labelled resources; this check holds whatever the mandatory policy.

The rule, for definitions and attachments made by anyone but root acting as themselves:

* a disk is a ``file`` or ``block`` disk; network, volume, directory and other disk types
  reach things this check cannot see, so only root may use them;
* its one ``<source>`` carries only the attribute libvirt reads for that type (``file`` for a
  file disk, ``dev`` for a block disk: ``secured_virt.confinement.sources``), and that path is
  absolute and, with symlinks resolved, lies inside one of the configured ``disk_dirs``
  (default ``/var/lib/libvirt/images``);
* the image format is raw or qcow2, and a qcow2 image's header is read in full
  (``secured_virt.confinement.qcow2``): no external data file, no feature this project does
  not understand, backing files recorded as raw or qcow2, and the whole backing chain inside
  ``disk_dirs`` too (the classic trick: a qcow2 file whose backing file is ``/etc/shadow``);
* a backing chain or a mirror is never taken from the XML: the hypervisor reads it from the
  image, where it was checked.

An image inside the directories is writable by its guest (and a guest can write a qcow2
header into its own raw disk), so it is untrusted every time it is used:
``check_domain_images`` reads the headers again and is called whenever a domain is defined,
created, started, restored or given a disk.

The directories themselves are trusted: they should be writable only by root (or whoever
prepares images), since a user able to replace an image by a symlink between this check and
the hypervisor's open would defeat any check done from outside the hypervisor.
"""

from __future__ import annotations

import os

from lxml import etree

from . import qcow2, sources

#: disk types a non-root caller may use: a host file or a host block device
USER_DISK_TYPES = ("file", "block")
#: image formats whose references to other files we can check (None: libvirt's default, raw)
USER_FORMATS = (None, "raw", "qcow2")
QCOW2_MAGIC = qcow2.MAGIC
#: deeper qcow2 chains are refused (QEMU's own limit is in the same range)
MAX_CHAIN = 16
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_pis=True
)


class DiskPolicyError(ValueError):
    """A disk a non-root caller may not use; the message says which and why."""


def check_domain_disks(root: etree._Element, dirs) -> list[str]:
    """Raise DiskPolicyError unless every <disk> of domain XML ``root`` follows the rule;
    return every host file the disks reach (images and their backing files, symlinks
    resolved)."""
    reached: list[str] = []
    for disk in root.iterfind("devices/disk"):
        reached += check_disk(disk, dirs)
    return reached


def check_domain_images(domain_xml, dirs) -> list[str]:
    """Re-check every image of a domain that lies inside ``dirs``, reading its headers now.

    ``domain_xml`` is the domain's XML (text or parsed).  Call it each time the domain is
    defined, created, started, restored or given a disk, on behalf of anyone but root: an
    image a user (or a guest) can write may have changed since it was last checked.  A file
    or block disk whose source lies outside ``dirs`` was put there by root (the fence refuses
    it to everyone else) and is root's responsibility; a file or block disk inside them must
    follow the whole rule (format, header, chain).  Returns every host file the checked
    images reach; raises DiskPolicyError naming the disk and what is wrong."""
    root = domain_xml
    if isinstance(domain_xml, str):
        try:
            root = etree.fromstring(domain_xml.encode(), _PARSER)
        except etree.XMLSyntaxError as exc:
            raise DiskPolicyError(f"domain XML is not well-formed: {exc}") from None
    reached: list[str] = []
    for disk in root.iterfind("devices/disk"):
        src = sources.disk_source(disk)
        if src is None or src[0] not in USER_DISK_TYPES:
            continue
        if _inside_any(src[1], dirs) is None:
            continue
        reached += check_image(src[1], _format(disk), dirs, _what(disk))
    return reached


def _what(disk) -> str:
    line = f"line {disk.sourceline}: " if disk.sourceline else ""
    target = (disk.find("target").get("dev") if disk.find("target") is not None else None) or "?"
    return f"{line}disk {target}"


def _format(disk) -> str | None:
    return disk.find("driver").get("type") if disk.find("driver") is not None else None


def check_disk(disk: etree._Element, dirs) -> list[str]:
    """Raise DiskPolicyError unless this <disk> element follows the module's rule; return the
    host files it reaches (see check_domain_disks)."""
    what = _what(disk)
    dtype = disk.get("type", "file")
    for tag in ("backingStore", "mirror"):
        el = disk.find(tag)
        if el is not None and len(el):
            raise DiskPolicyError(
                f"{what}: a <{tag}> is only allowed in definitions made by root; the "
                "hypervisor reads an image's backing chain from the image itself"
            )
    if disk.find("source") is None:  # e.g. an empty CD-ROM drive: nothing on the host
        return []
    if dtype not in USER_DISK_TYPES:
        raise DiskPolicyError(
            f"{what}: disks of type '{dtype}' are only allowed in definitions made by root; "
            f"use a {' or '.join(USER_DISK_TYPES)} disk inside {_shown(dirs)}"
        )
    try:
        sources.check_unambiguous(disk.find("source"))
    except sources.SourceError as exc:
        raise DiskPolicyError(str(exc)) from None
    src = sources.disk_source(disk)
    if src is None:
        raise DiskPolicyError(
            f"{what}: a {dtype} disk names its source with "
            f"{'file' if dtype == 'file' else 'dev'}=PATH"
        )
    return check_image(src[1], _format(disk), dirs, what)


def check_image(path: str, fmt: str | None, dirs, what: str = "disk") -> list[str]:
    """Raise DiskPolicyError unless image ``path`` of format ``fmt`` (and, for qcow2, its
    header and backing chain) lies inside ``dirs``; return the files reached, top first.

    Relative backing names are resolved against the directory of the image *as named* (not
    its resolved target), as QEMU and libvirt do; each result must lie inside ``dirs``."""
    if fmt not in USER_FORMATS:
        raise DiskPolicyError(
            f"{what}: image format '{fmt}' is only allowed in definitions made by root; "
            "use raw or qcow2"
        )
    chain = [inside(path, dirs, what)]
    named, fmt_now = path, fmt
    for _depth in range(MAX_CHAIN):
        if fmt_now != "qcow2":
            return chain
        try:
            header = qcow2.read_header(chain[-1])
        except qcow2.Qcow2Error as exc:
            raise DiskPolicyError(f"{what}: {exc}") from None
        if header is None:
            if not os.path.lexists(chain[-1]):
                if named is path:
                    return chain  # defined before the image exists: checked again at each use
                raise DiskPolicyError(f"{what}: backing file {named} does not exist")
            raise DiskPolicyError(f"{what}: {named} is used as qcow2 but is not a qcow2 image")
        backing = header.backing_file
        if backing is None:
            return chain
        if ":" in backing.split("/", 1)[0]:  # nbd:..., json:{...}, http://...
            raise DiskPolicyError(
                f"{what}: {chain[-1]} has backing file '{backing}', a protocol rather than "
                "a file; only root may use such images"
            )
        if not backing.startswith("/"):
            backing = os.path.join(os.path.dirname(named), backing)
        chain.append(inside(backing, dirs, f"{what}: backing file of {chain[-1]}"))
        named, fmt_now = backing, header.backing_format
    raise DiskPolicyError(f"{what}: backing chain of {path} is deeper than {MAX_CHAIN}")


def _inside_any(path, dirs) -> str | None:
    """``path`` with symlinks resolved if it lies inside one of ``dirs``, else None."""
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        return None
    real = os.path.realpath(path)
    for d in dirs:
        top = os.path.realpath(d)
        if real != top and os.path.commonpath((real, top)) == top:
            return real
    return None


def inside(path: str, dirs, what: str) -> str:
    """``path`` with symlinks resolved, if it lies inside one of ``dirs``; else an error."""
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        raise DiskPolicyError(f"{what}: source {path!r} must be an absolute path")
    real = _inside_any(path, dirs)
    if real is not None:
        return real
    real = os.path.realpath(path)
    shown = path if real == path else f"{path} (which is {real})"
    raise DiskPolicyError(
        f"{what}: {shown} is outside the image directories {_shown(dirs)}; ask root to put "
        "the image there (disk_dirs in secured-virt.conf)"
    )


def qcow2_backing_file(path: str) -> str | None:
    """The backing file name recorded in a qcow2 header, or None (no file, not qcow2, none);
    DiskPolicyError for a header this project refuses (see secured_virt.confinement.qcow2)."""
    try:
        header = qcow2.read_header(path)
    except qcow2.Qcow2Error as exc:
        raise DiskPolicyError(str(exc)) from None
    return header.backing_file if header is not None else None


def _shown(dirs) -> str:
    return ", ".join(dirs) if dirs else "(none configured)"
