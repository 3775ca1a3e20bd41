"""sVirt made real without SELinux: each realm's QEMU under its own uid, its images 0600.

This host has no SELinux, so the category pairs of ``policy.mcs`` cannot be enforced by the
kernel's MCS rules.  libvirt's DAC security driver can: with a *static* DAC seclabel the QEMU
process drops to the given uid:gid, and an image owned by another uid with mode 0600 is then
refused by the kernel itself (EACCES), even if every check of the management stack had a bug.
(A *dynamic* DAC label would not do: it gives every VM qemu.conf's single user.)

Three things make it hold, each found on libvirt 9.0 with real guests:

* the domain carries ``<seclabel type='static' model='dac' relabel='yes'><label>+UID:+GID
  </label></seclabel>`` (relabel='yes' so libvirt still hands the QEMU its runtime files:
  monitor socket, pty, per-domain directory);
* **every disk source carries** ``<seclabel model='dac' relabel='no'/>``: without it libvirt,
  as root, chowns each image to the domain's uid before QEMU starts, so a realm-B guest naming
  realm A's image would simply get it (A's image chowned to B) and the kernel would never see
  a cross-realm open;
* the realm's images are owned by the realm's uid:gid with mode 0600 (:func:`own_image`, when
  a define, create, start or attach uses an image of the realm's storage), except a read-only
  disk's shared content (:func:`shared_readonly`: root's, readable by all, written by root
  only), which keeps its owner and mode: the shared read-only image of sVirt, with no
  category and no realm's uid.

All other ``<seclabel>`` elements are removed first (root's XML may carry some; a caller's is
refused earlier by ``devices``), so no disk can switch relabeling back on.

The realm's system user (``svirt-r-<realm>``) is made by :func:`ensure_realm_user` (what
``svirt-admin realm create|setup`` runs, idempotent) and removed by :func:`remove_realm_user`
when set-up made it and the realm goes.  :func:`dac_problem` says whether a definition coming
back from a save image or snapshot carries exactly the realm's labels (else it is refused), and
:func:`image_drifted` whether a start must give an image back to its realm first.

:func:`explain_start_error` turns libvirt's wording of the kernel's refusal into a sentence for
people; :func:`selinux_status` says whether dynamic SELinux labels could carry the categories
(not here).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
from dataclasses import dataclass

from lxml import etree

from secured_virt.fsutil import UnsafeFileError, check_ancestors

from . import sources, vmmeta

IMAGE_MODE = 0o600
SELINUX_FS = "/sys/fs/selinux"


class DacError(ValueError):
    """A DAC label or image that cannot be used; the message says what and why."""


@dataclass(frozen=True, slots=True)
class DacLabel:
    """A realm's system user and group, as numbers (libvirt's ``+UID:+GID`` form)."""

    uid: int
    gid: int

    def __post_init__(self) -> None:
        for what, v in (("uid", self.uid), ("gid", self.gid)):
            if not isinstance(v, int) or v <= 0 or v >= 2**32 - 1:
                raise DacError(
                    f"a realm's QEMU needs a {what} of its own, not {v!r} (root, or no id)"
                )

    @classmethod
    def parse(cls, text: str) -> DacLabel:
        """``"+20001:+20001"`` as libvirt writes it (the ``+`` forces a number)."""
        m = re.fullmatch(r"\+?(\d+):\+?(\d+)", text.strip())
        if not m:
            raise DacError(f"{text!r} is not a DAC label: expected +UID:+GID")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"+{self.uid}:+{self.gid}"


def seclabel_xml(uid: int, gid: int) -> str:
    """The domain-level static DAC seclabel that runs QEMU as uid:gid."""
    label = DacLabel(uid, gid)
    return f"<seclabel type='static' model='dac' relabel='yes'><label>{label}</label></seclabel>"


def apply_dac(domain_xml: str, uid: int, gid: int) -> str:
    """``domain_xml`` with every seclabel replaced by ours and relabeling off on every disk.

    Why every one: a seclabel of another model could pin a different process label, and a
    per-disk ``<seclabel model='dac' relabel='yes'>`` or ``<label>`` would have libvirt chown
    that image as root — exactly the cross-realm open the kernel is meant to refuse.
    """
    label = DacLabel(uid, gid)
    root = vmmeta.parse_domain_xml(domain_xml)
    for el in list(root.iter("seclabel")):
        el.getparent().remove(el)
    for disk in root.iterfind("devices/disk"):
        src = disk.find("source")
        if src is None:  # an empty CD-ROM drive: nothing to open
            continue
        etree.SubElement(src, "seclabel", model="dac", relabel="no")
        for bs in disk.iter("backingStore"):  # each layer of an explicit chain
            bsrc = bs.find("source")
            if bsrc is not None:
                etree.SubElement(bsrc, "seclabel", model="dac", relabel="no")
    root.append(etree.fromstring(seclabel_xml(label.uid, label.gid)))
    return etree.tostring(root, encoding="unicode")


def domain_dac_label(domain_xml: str) -> DacLabel | None:
    """The static DAC label a domain XML carries, None if it has none."""
    root = vmmeta.parse_domain_xml(domain_xml)
    for el in root.iterfind("seclabel"):
        if el.get("model") == "dac" and el.get("type", "static") == "static":
            text = el.findtext("label")
            if text:
                return DacLabel.parse(text)
    return None


def dac_problem(domain_xml: str, uid: int, gid: int) -> str | None:
    """Why ``domain_xml`` would not run confined as uid:gid (None: it would), i.e. whether
    it is exactly what :func:`apply_dac` makes: one domain seclabel, static DAC with our
    label; on every disk source (and backing layer) a DAC seclabel with relabel='no' and no
    label of its own; no other seclabel anywhere.  For definitions that come back from a save
    image or a snapshot, which may be old (made before the realm's set-up, or in another
    realm) or, for a save file, the caller's own bytes."""
    want = DacLabel(uid, gid)
    root = vmmeta.parse_domain_xml(domain_xml)
    top = root.findall("seclabel")
    disk_labels = []
    for disk in root.iterfind("devices/disk"):
        srcs = [disk.find("source")] + [bs.find("source") for bs in disk.iter("backingStore")]
        for src in srcs:
            if src is None:
                continue
            labs = src.findall("seclabel")
            if not labs:
                return f"disk source {src.get('file') or src.get('dev') or '?'} may be relabelled"
            disk_labels += labs
    for el in disk_labels:
        if el.get("model") != "dac" or el.get("relabel") != "no" or len(el):
            return "a disk carries a security label of its own"
    if len(top) != 1:
        return f"it carries {len(top)} domain security labels, not the realm's one"
    el = top[0]
    if el.get("model") != "dac" or el.get("type", "static") != "static":
        return f"its security label is {el.get('type')} {el.get('model')}, not static DAC"
    try:
        have = DacLabel.parse(el.findtext("label") or "")
    except DacError as exc:
        return str(exc)
    if have != want:
        return f"its QEMU would run as {_who(have.uid, have.gid)}, not {_who(uid, gid)}"
    image = el.findtext("imagelabel")  # libvirt writes it into live and saved XML
    if image is not None and image.strip() != (el.findtext("label") or "").strip():
        return "its image label differs from its process label"
    if sum(1 for _ in root.iter("seclabel")) != len(top) + len(disk_labels):
        return "it carries security labels elsewhere than on the domain and its disks"
    return None


def strip_dac(domain_xml: str) -> str:
    """``domain_xml`` without any seclabel: what the device allow-list is shown for a
    definition :func:`dac_problem` accepted (the labels are ours, not the caller's)."""
    root = vmmeta.parse_domain_xml(domain_xml)
    for el in list(root.iter("seclabel")):
        el.getparent().remove(el)
    return etree.tostring(root, encoding="unicode")


def own_image(path: str, uid: int, gid: int) -> None:
    """Give an image to a realm: owner uid:gid, mode 0600, checked on the open descriptor.

    Refused: a path whose directories someone else could swap (``fsutil.check_ancestors``), a
    symbolic link, anything that is not a regular file, and a file with more than one hard link
    (another name for it may sit in another realm's directory).
    """
    label = DacLabel(uid, gid)
    try:
        check_ancestors(path)
    except UnsafeFileError as exc:
        raise DacError(f"{path}: {exc}") from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise DacError(f"cannot open the image {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DacError(f"{path} is not a regular file; only image files are given to realms")
        if st.st_nlink != 1:
            raise DacError(
                f"{path} has {st.st_nlink} hard links; another name could reach it from "
                "elsewhere: copy it instead"
            )
        os.fchown(fd, label.uid, label.gid)
        os.fchmod(fd, IMAGE_MODE)
    finally:
        os.close(fd)


def readonly_sources(domain_xml: str) -> frozenset[str]:
    """The host paths of ``domain_xml``'s read-only disks (``<readonly/>``), each read as libvirt
    does (``sources.disk_source``); for :func:`shared_readonly`."""
    root = vmmeta.parse_domain_xml(domain_xml)
    out = set()
    for disk in root.iterfind("devices/disk"):
        if disk.find("readonly") is None:
            continue
        src = sources.disk_source(disk)
        if src is not None and src[0] in ("file", "block"):
            out.add(os.path.normpath(src[1]))
    return frozenset(out)


def shared_readonly(path: str) -> bool:
    """Whether a read-only disk's file is shared content, left as it is (sVirt's ``s0``, no
    category; SELinux's virt_content_t): a regular file of root's that everyone may read and
    nobody but root may write.  Its realm's QEMU reads it through the mode's "other" bits, and
    neither libvirt (relabel='no') nor :func:`own_image` takes it from root, so one base image
    or ISO serves every guest that names it.  Anything else a read-only disk names in a realm's
    storage (a file others may write, one root alone may read, another user's) is the realm's
    like any image: its QEMU user's, 0600."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    mode = stat.S_IMODE(st.st_mode)
    return stat.S_ISREG(st.st_mode) and st.st_uid == 0 and bool(mode & 0o004) and not mode & 0o022


def image_drifted(path: str, uid: int, gid: int) -> bool:
    """Whether an image no longer has the realm's owner and mode 0600 (someone chowned or
    chmodded it by hand, or it was copied in): the start gives it back first.  A path that
    cannot be read is not "drifted": the start's own open reports it."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    return (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (uid, gid, IMAGE_MODE)


# -- the realms' system users -------------------------------------------------------------
USER_PREFIX = "svirt-r-"
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
USERADD, USERDEL, GROUPDEL = "/usr/sbin/useradd", "/usr/sbin/userdel", "/usr/sbin/groupdel"


def realm_user_name(realm: str) -> str:
    """``svirt-r-<realm>``, or a shortened name with a digest when that would pass the 32
    characters useradd accepts (realm names may be 32 long): still one name per realm."""
    name = USER_PREFIX + realm
    if len(name) <= 32:
        return name
    import hashlib

    return f"{USER_PREFIX}{realm[:15]}-{hashlib.sha256(realm.encode()).hexdigest()[:8]}"


@dataclass(frozen=True, slots=True)
class RealmUser:
    name: str
    uid: int
    gid: int
    created: bool  # this call created it (so removing the realm may remove it)


def ensure_realm_user(realm: str) -> RealmUser:
    """The system user and group a realm's QEMU runs as, created when missing (idempotent).

    A system account with no home and no login shell, in a group of its own; no password.
    An existing account of that name is used only if it looks like one this made (a system
    uid, no login shell): anything else is someone's account, and giving it the realm's
    images would hand them a tenant's disks."""
    import subprocess

    name = realm_user_name(realm)
    pw = _account(name)
    created = False
    if pw is None:
        r = subprocess.run(
            [USERADD, "--system", "--user-group", "--no-create-home", "--shell",
             "/usr/sbin/nologin", "--comment", f"secured-virt realm {realm} (QEMU)", "--", name],
            env=_ENV, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        if r.returncode != 0:
            raise DacError(
                f"cannot create the system user '{name}' for realm '{realm}': "
                f"{(r.stderr or r.stdout).strip() or f'useradd exited {r.returncode}'}"
            )
        pw = pwd.getpwnam(name)
        created = True
    if (
        pw.pw_uid == 0
        or pw.pw_gid == 0
        or pw.pw_uid >= 1000
        or not pw.pw_shell.endswith(("nologin", "false"))
    ):
        raise DacError(
            f"an account '{name}' already exists (uid {pw.pw_uid}, shell {pw.pw_shell}) and is "
            f"not a system account without login: refusing to give it the images of realm "
            f"'{realm}'; remove or rename it, then run svirt-admin realm setup again"
        )
    return RealmUser(name, pw.pw_uid, pw.pw_gid, created)


def _account(name: str):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def remove_realm_user(name: str) -> str | None:
    """Delete a realm's system user and its group (when the realm goes); None on success,
    else what could not be done.  Only names of realm users are ever deleted."""
    import subprocess

    if not name.startswith(USER_PREFIX):
        return f"'{name}' is not a realm user ({USER_PREFIX}*); left alone"
    try:
        pwd.getpwnam(name)
    except KeyError:
        return None
    r = subprocess.run(
        [USERDEL, "--", name], env=_ENV, capture_output=True, text=True, check=False, timeout=60
    )
    if r.returncode not in (0, 6):
        return f"userdel {name}: {r.stderr.strip()}"
    try:
        grp.getgrnam(name)
    except KeyError:
        return None
    r = subprocess.run(
        [GROUPDEL, "--", name], env=_ENV, capture_output=True, text=True, check=False, timeout=60
    )
    return None if r.returncode in (0, 6) else f"groupdel {name}: {r.stderr.strip()}"


def process_ids(pid: int) -> tuple[int, int] | None:
    """(real uid, real gid) of a process from /proc/PID/status; None if it is gone."""
    uid = gid = None
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("Uid:"):
                    uid = int(line.split()[1])
                elif line.startswith("Gid:"):
                    gid = int(line.split()[1])
    except OSError:
        return None
    return (uid, gid) if uid is not None and gid is not None else None


def _who(uid: int | None, gid: int | None) -> str:
    try:
        user = pwd.getpwuid(uid).pw_name if uid is not None else None
    except KeyError:
        user = None
    try:
        group = grp.getgrgid(gid).gr_name if gid is not None else None
    except KeyError:
        group = None
    u = f"uid {uid}" + (f" ({user})" if user else "")
    g = f"gid {gid}" + (f" ({group})" if group else "")
    return f"{u}, {g}"


_OPEN_DENIED = re.compile(r"Could not open '([^']+)': Permission denied")
_IN_USE = re.compile(r"Setting different DAC user or group on (.+?) which is already in use")


def explain_start_error(message: str, name: str, label: DacLabel | None = None) -> str | None:
    """A sentence for people from libvirt's error when the kernel (or libvirt's DAC driver)
    refused a guest its image; None if ``message`` is not such an error (show it unchanged).

    ``message`` is ``str()`` of the libvirt or backend error; ``label`` the uid:gid the guest's
    QEMU was to run as.  The image's owner is read now so the sentence can name it.
    """
    m = _OPEN_DENIED.search(message)
    if m:
        path = m.group(1)
        runs_as = f"its QEMU runs as {_who(label.uid, label.gid)}" if label else ""
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is None:
            owned, mine = f"{path} is not readable by it", False
        else:
            owned = f"{path} belongs to {_who(st.st_uid, st.st_gid)}, mode {st.st_mode & 0o777:04o}"
            mine = label is not None and st.st_uid == label.uid
        why = (
            "the image's mode does not let its owner read and write it"
            if mine
            else "the image belongs to another realm"
        )
        return (
            f"{name} was not started: the kernel refused its QEMU access to {path} "
            f"(permission denied): {runs_as + '; ' if runs_as else ''}{owned}. Probably {why}: "
            f"use an image from {name}'s own realm storage, or have root move the image to "
            "this realm"
        )
    m = _IN_USE.search(message)
    if m:
        return (
            f"{name} was not started: {m.group(1)} is in use by another running guest under "
            "another realm's user, and one image cannot belong to two realms; stop that guest "
            "or use an image of your own realm"
        )
    return None


@dataclass(frozen=True, slots=True)
class SelinuxStatus:
    enabled: bool
    enforcing: bool | None
    text: str


def selinux_status(root: str = SELINUX_FS) -> SelinuxStatus:
    """Whether the kernel could enforce the category pairs itself (SELinux MCS).

    Where it is enabled, libvirt's SELinux driver can run each QEMU at ``svirt_t:s0:cI,cJ``
    with the pair allocated here (a static label, since libvirt's dynamic draw knows nothing of
    realm categories); where it is not, the pairs are recorded and emulated, and the DAC driver
    (uids) is what the kernel enforces.  dominfo shows ``text``.
    """
    try:
        with open(os.path.join(root, "enforce")) as fh:
            value = fh.read().strip()
    except FileNotFoundError:
        return SelinuxStatus(
            False,
            None,
            "SELinux is not enabled on this host: category pairs are recorded but not "
            "enforced by the kernel; each realm's QEMU is confined by its own uid (DAC)",
        )
    except OSError as exc:
        return SelinuxStatus(
            False, None, f"SELinux state unknown ({root}/enforce: {exc.strerror}); DAC only"
        )
    enforcing = value == "1"
    mode = "enforcing" if enforcing else "permissive"
    return SelinuxStatus(
        True,
        enforcing,
        f"SELinux is enabled ({mode}): libvirt can label each QEMU and its images with the "
        "allocated category pair",
    )


def selinux_seclabel_xml(
    categories: str, process_type: str = "svirt_t", user: str = "system_u", role: str = "system_r"
) -> str:
    """The static SELinux seclabel for a pair ``"cI,cJ"`` (for hosts where SELinux is on).

    Static, not dynamic: libvirt's dynamic labels draw their own pair from libvirtd's whole
    range and cannot keep realm categories out of other realms' draws (reference §2).
    """
    if not re.fullmatch(r"c\d{1,4},c\d{1,4}", categories):
        raise DacError(f"{categories!r} is not a category pair (cI,cJ)")
    for part in (process_type, user, role):
        if not re.fullmatch(r"[A-Za-z0-9_]+", part):
            raise DacError(f"{part!r} is not an SELinux identifier")
    return (
        "<seclabel type='static' model='selinux' relabel='yes'>"
        f"<label>{user}:{role}:{process_type}:s0:{categories}</label></seclabel>"
    )
