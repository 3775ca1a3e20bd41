"""attach-disk on a guest of a set-up realm takes define's DAC path (issue 15, Storage/sVirt).

define and create give every disk ``<seclabel model='dac' relabel='no'/>`` and hand the images
of the realm's storage to the realm's QEMU user (0600) themselves, so libvirt never chowns an
image as root.  attach-disk used to send the bare disk: libvirt's DAC driver then chowned the
attached file to the realm's uid (a shared read-only image included, and only its owner, not
its mode), and the live definition no longer carried exactly the realm's labels.

Real libvirtd + QEMU (TCG), a real svirtd, the realm's tenant a real other uid (setpriv), the
realm set up by ``svirt-admin realm setup`` (its own system user).  After a live attach to the
running guest:

* a shared read-only image (root's, 0644, ``--mode readonly``) keeps its owner and mode, and
  the live XML has relabel='no' on it;
* a writable image of the realm's storage belongs to the realm's QEMU user, mode 0600, with
  relabel='no' too; the live definition is exactly what define makes (``dac_problem``);
* ``--config`` writes the same labels into the persistent definition.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from lxml import etree

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "daemon")]

from svtd_helpers import RealEnv, call_as, write_root_file  # noqa: E402
from tenancy_helpers import local_accounts, root_call, tear_down_realm_host  # noqa: E402

from secured_virt.backends.factory import open_backend  # noqa: E402
from secured_virt.confinement import dac  # noqa: E402
from secured_virt.testing.libvirtd import tiny_guest_xml  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="QEMU, system users and real uids need root"),
]
IMAGES = Path("/var/lib/libvirt/images")
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
OPS = ("list", "dominfo", "define", "start", "destroy", "attach-disk", "undefine")
PA = (
    "<RolePolicyDefinition><Role name='Everyone'><ManageVM type='all'/><ControlOperation>"
    "<Accept>" + "".join(f"<operation name='{o}'/>" for o in OPS) + "</Accept>"
    "</ControlOperation></Role></RolePolicyDefinition>"
)


@pytest.fixture
def realm(libvirtd):
    tag = f"ar{os.getpid() % 100000}x{uuid.uuid4().hex[:4]}"
    made_images = not IMAGES.exists()
    IMAGES.mkdir(mode=0o711, parents=True, exist_ok=True)
    scratch = IMAGES / f"svt-arl-{uuid.uuid4().hex[:8]}"
    for d in (scratch, scratch / "a"):
        d.mkdir(mode=0o711)
    for rel in ("base.iso", "data.raw", "next.raw"):
        path = scratch / "a" / rel
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), "1M"], env=_ENV,
                       check=True)  # fmt: skip
        os.chmod(path, 0o644)  # as root leaves a file: root's, readable by all
    be = open_backend("libvirt", "qemu:///system")
    env = None
    with local_accounts() as acc:
        try:
            tenant = acc.user("ta")
            env = RealEnv(
                uri="qemu:///system",
                realms="{node}.realms.xml",
                realm_state_dir="{node}.state",
                disk_dirs=str(scratch),
                save_dir="{node}.save",
            )
            write_root_file(
                env.ua,
                f'<UserConfiguration><User name="{tenant}"><UserRole role="Everyone"/></User>'
                "</UserConfiguration>",
            )
            write_root_file(env.pa, PA)
            write_root_file(
                Path(f"{env.node}.realms.xml"),
                f"""<Realms><Realm name="{tag}"><Member user="{tenant}"/><VM pattern="{tag}-*"/>
    <Storage pool="{tag}" path="{scratch / "a"}"/></Realm></Realms>""",
            )
            env.d = env.daemon().start().wait_ready()
            r = root_call(env, "realm", {"action": "setup", "realm": tag})
            assert r["status"] == 0, r
            yield tag, scratch / "a", env, pwd.getpwnam(tenant), be
        finally:
            tear_down_realm_host(be, env, tag, (tag,), scratch, IMAGES, made_images)


def disk_seclabels(xml: str, target: str) -> list[dict]:
    root = etree.fromstring(xml.encode())
    (disk,) = [d for d in root.iterfind("devices/disk") if d.find("target").get("dev") == target]
    return [dict(el.attrib) for el in disk.find("source").iter("seclabel")]


def owner_mode(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid, st.st_mode & 0o777


def test_attach_to_a_realm_guest_labels_like_define(realm, readable_src, as_user):
    tag, store, env, tenant, be = realm
    vm = f"{tag}-web"
    qemu = pwd.getpwnam(dac.realm_user_name(tag))

    def call(command, args):
        return call_as(as_user, tenant, readable_src, env.socket, command, args)

    r = call("define", {"xml": tiny_guest_xml(vm)})
    assert r["status"] == 0, r
    r = call("start", {"domain": vm})
    assert r["status"] == 0, r
    base, data, nxt = store / "base.iso", store / "data.raw", store / "next.raw"
    before = owner_mode(base)
    assert before == (0, 0, 0o644)

    # a shared read-only image: not relabelled, by libvirt or by us
    r = call("attach-disk", {"domain": vm, "source": str(base), "target": "vdb",
                             "mode": "readonly", "live": True})  # fmt: skip
    assert r["status"] == 0, r
    assert owner_mode(base) == before
    live = be.dumpxml(vm)
    assert disk_seclabels(live, "vdb") == [{"model": "dac", "relabel": "no"}]

    # a writable image of the realm's storage: the realm's QEMU user's, 0600
    r = call("attach-disk", {"domain": vm, "source": str(data), "target": "vdc", "live": True})
    assert r["status"] == 0, r
    assert owner_mode(data) == (qemu.pw_uid, qemu.pw_gid, 0o600)
    live = be.dumpxml(vm, security_info=True)
    assert disk_seclabels(live, "vdc") == [{"model": "dac", "relabel": "no"}]
    # the running definition carries exactly the realm's labels, as define makes them
    assert dac.dac_problem(live, qemu.pw_uid, qemu.pw_gid) is None

    # --config: the same labels in the definition the next start uses
    r = call("attach-disk", {"domain": vm, "source": str(nxt), "target": "vdd", "config": True})
    assert r["status"] == 0, r
    conf = be.dumpxml(vm, inactive=True, security_info=True)
    assert disk_seclabels(conf, "vdd") == [{"model": "dac", "relabel": "no"}]
    assert owner_mode(nxt) == (qemu.pw_uid, qemu.pw_gid, 0o600)
    assert dac.dac_problem(conf, qemu.pw_uid, qemu.pw_gid) is None


def test_define_and_start_leave_shared_read_only_content_to_root(realm, readable_src, as_user):
    """The same decision at define and start: a read-only disk of root's shared content keeps
    its owner and mode, a writable one is the realm's, and the guest runs with both."""
    from secured_virt.testing.libvirtd import qemu_processes

    tag, store, env, tenant, be = realm
    vm = f"{tag}-db"
    qemu = pwd.getpwnam(dac.realm_user_name(tag))
    base, data = store / "base.iso", store / "data.raw"
    disks = (
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
        f"<source file='{base}'/><target dev='vda' bus='virtio'/><readonly/></disk>"
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
        f"<source file='{data}'/><target dev='vdb' bus='virtio'/></disk>"
    )
    xml = tiny_guest_xml(vm).replace("<devices>", f"<devices>{disks}")
    for command, args in (("define", {"xml": xml}), ("start", {"domain": vm})):
        r = call_as(as_user, tenant, readable_src, env.socket, command, args)
        assert r["status"] == 0, r
    (pid,) = qemu_processes(vm)
    assert dac.process_ids(pid) == (qemu.pw_uid, qemu.pw_gid)
    assert owner_mode(base) == (0, 0, 0o644)
    assert owner_mode(data) == (qemu.pw_uid, qemu.pw_gid, 0o600)
    live = be.dumpxml(vm, security_info=True)
    assert disk_seclabels(live, "vda") == [{"model": "dac", "relabel": "no"}]


@pytest.mark.parametrize(
    "owner, mode, shared",
    [
        (0, 0o644, True),  # root's, readable by all, written by root only
        (0, 0o444, True),
        (0, 0o600, False),  # nobody else could read it: the realm's like any image
        (0, 0o664, False),  # its group may write it: not shared content
        (0, 0o646, False),  # everyone may write it
        (1, 0o644, False),  # not root's
    ],
)
def test_shared_readonly_is_roots_content_nobody_else_writes(tmp_path, owner, mode, shared):
    path = tmp_path / "img"
    path.write_bytes(b"\0" * 512)
    os.chown(path, owner, 0)
    os.chmod(path, mode)
    assert dac.shared_readonly(str(path)) is shared
    link = tmp_path / "link"
    link.symlink_to(path)
    assert dac.shared_readonly(str(link)) is False  # a link is never followed


def test_readonly_sources_reads_the_attribute_libvirt_uses():
    xml = (
        "<domain><name>x</name><devices>"
        "<disk type='file'><source file='/i/a/../ro.img' dev='/decoy'/><readonly/></disk>"
        "<disk type='block'><source dev='/dev/ro' file='/decoy2'/><readonly/></disk>"
        "<disk type='file'><source file='/i/rw.img'/></disk>"
        "<disk type='file' device='cdrom'><readonly/></disk>"
        "</devices></domain>"
    )
    assert dac.readonly_sources(xml) == {"/i/ro.img", "/dev/ro"}
