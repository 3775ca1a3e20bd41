"""sVirt made real with libvirt's DAC driver: real QEMU guests of two realms run under two
system uids (read from /proc), and a guest of realm B whose disk is realm A's 0600 image is
refused by the kernel — while A's guest runs and after it stopped — with a sentence that says
so.  Each start takes its category pair through shype.categories, so the pairs of the two
running guests are distinct in their live metadata, and a failed start leaves none behind.

The test creates two system users (svt-realm-a, svt-realm-b) and removes them afterwards, and
keeps its images in a scratch directory under /var/lib/libvirt/images, removed afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from secured_virt.backends.base import BackendError
from secured_virt.backends.factory import open_backend
from secured_virt.confinement import dac, vmmeta
from secured_virt.shype import categories as hc
from secured_virt.shype.categories import HostCategories
from secured_virt.testing.libvirtd import qemu_processes, tiny_guest_xml

pytestmark = pytest.mark.integration
IMAGES = Path("/var/lib/libvirt/images")
REALM_USERS = ("svt-realm-a", "svt-realm-b")
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}


@pytest.fixture(scope="module")
def realm_users(libvirtd):
    """Two system users with their own groups, created here and removed afterwards."""
    created = []
    for name in REALM_USERS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ],
                env=_ENV,
                check=True,
                capture_output=True,
            )
            created.append(name)
    yield {name: pwd.getpwnam(name) for name in REALM_USERS}
    for name in created:
        subprocess.run(["userdel", name], env=_ENV, check=False, capture_output=True)
        subprocess.run(["groupdel", name], env=_ENV, check=False, capture_output=True)


@pytest.fixture(scope="module")
def scratch(libvirtd):
    made_images = not IMAGES.exists()
    IMAGES.mkdir(mode=0o711, parents=True, exist_ok=True)
    d = IMAGES / f"svt-tenancy-{uuid.uuid4().hex[:8]}"
    d.mkdir(mode=0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)
    if made_images:
        with contextlib.suppress(OSError):
            IMAGES.rmdir()


@pytest.fixture
def backend(libvirtd):
    be = open_backend("libvirt", "qemu:///system")
    names: list[str] = []
    yield be, names
    for n in names:
        with contextlib.suppress(BackendError):
            be.destroy(n)
    be.close()


def make_image(scratch: Path, name: str, user) -> str:
    path = scratch / name
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), "1M"], env=_ENV, check=True)
    dac.own_image(str(path), user.pw_uid, user.pw_gid)
    return str(path)


def guest(name: str, image: str, user) -> tuple[str, str]:
    """(uuid, XML) of a tiny guest with one raw disk, its QEMU to run as ``user``."""
    uid = str(uuid.uuid4())
    disk = (
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
        f"<source file='{image}'/><target dev='vda' bus='virtio'/></disk>"
    )
    xml = tiny_guest_xml(name).replace("<devices>", f"<devices>{disk}")
    xml = xml.replace(f"<name>{name}</name>", f"<name>{name}</name><uuid>{uid}</uuid>")
    return uid, dac.apply_dac(xml, user.pw_uid, user.pw_gid)


def start(host, be, names, name, image, user):
    uid, xml = guest(name, image, user)
    with host.instantiating(uid, name) as pair:
        be.create(xml)
        names.append(name)
    return uid, pair


def qemu_ids(name: str) -> tuple[int, int]:
    (pid,) = qemu_processes(name)
    return dac.process_ids(pid)


def test_two_realms_guests_run_as_their_own_uids_and_cannot_open_each_others_image(
    backend, realm_users, scratch, tmp_path
):
    be, names = backend
    a, b = realm_users["svt-realm-a"], realm_users["svt-realm-b"]
    tag = uuid.uuid4().hex[:6]
    img_a = make_image(scratch, "a.raw", a)
    img_b = make_image(scratch, "b.raw", b)
    host = HostCategories(str(tmp_path / "acm"), lambda: be)

    _ua, pair_a = start(host, be, names, f"svt-ra-{tag}", img_a, a)
    _ub, pair_b = start(host, be, names, f"svt-rb-{tag}", img_b, b)
    assert qemu_ids(f"svt-ra-{tag}") == (a.pw_uid, a.pw_gid)
    assert qemu_ids(f"svt-rb-{tag}") == (b.pw_uid, b.pw_gid)
    assert pair_a != pair_b
    for name, pair in ((f"svt-ra-{tag}", pair_a), (f"svt-rb-{tag}", pair_b)):
        assert vmmeta.parse(be.get_metadata(name, vmmeta.NS)).categories == str(pair)

    # realm B's guest names realm A's image: refused by the kernel, A's guest running or not
    for a_running in (True, False):
        if not a_running:
            be.destroy(f"svt-ra-{tag}")
        thief = f"svt-steal-{tag}-{int(a_running)}"
        uid, xml = guest(thief, img_a, b)
        with pytest.raises(BackendError) as exc, host.instantiating(uid, thief):
            be.create(xml)
            names.append(thief)
        raw = str(exc.value)
        assert f"Could not open '{img_a}': Permission denied" in raw
        text = dac.explain_start_error(raw, thief, dac.DacLabel(b.pw_uid, b.pw_gid))
        assert text.startswith(
            f"{thief} was not started: the kernel refused its QEMU access "
            f"to {img_a} (permission denied)"
        )
        assert f"runs as uid {b.pw_uid} (svt-realm-b)" in text
        assert f"belongs to uid {a.pw_uid} (svt-realm-a)" in text and "mode 0600" in text
        assert "another realm" in text
        assert qemu_processes(thief) == []
        assert uid not in json.loads((tmp_path / "acm" / hc.FILE).read_text())
        st = os.stat(img_a)  # libvirt did not hand A's image to B
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (a.pw_uid, a.pw_gid, 0o600)

    # B's own guest still runs with its pair; A's pair was given back when A stopped
    assert {r.name: r.pair for r in host.running()}[f"svt-rb-{tag}"] == pair_b
    assert f"svt-ra-{tag}" not in {r.name for r in host.running()}
