"""sVirt made real per realm, end to end (issue 15): real QEMU, real uids, a real svirtd.

Two realms, each set up by ``svirt-admin realm setup`` (through svirtd, as root): each gets
its own system user ``svirt-r-<realm>`` and category, recorded in root's realms file.  Their
tenants (real other uids, through svirtd) define and start guests from their realm's storage:

* the two guests' QEMU processes run as the two realm users (read from /proc), their images
  belong to those users with mode 0600, and dominfo shows realm, DAC label, category pair
  (holding the realm's category) and that SELinux is not enabled here;
* a tenant of realm B cannot boot, attach or restore realm A's image or VM (exit 3, the
  realm step);
* and if the management stack had a bug that let a B guest name A's image (the realm step
  switched off in an in-process Service), the kernel still refuses B's QEMU: the start fails
  with a sentence naming both uids, and A's image keeps its owner.

Everything the test makes (accounts, realm users, images, guests) is removed afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "daemon")]

from svtd_helpers import RealEnv, call_as, write_root_file  # noqa: E402
from tenancy_helpers import local_accounts, root_call, tear_down_realm_host  # noqa: E402

from secured_virt.backends.factory import open_backend  # noqa: E402
from secured_virt.confinement import dac  # noqa: E402
from secured_virt.requests import Request  # noqa: E402
from secured_virt.testing.libvirtd import (  # noqa: E402
    qemu_processes,
    tiny_guest_xml,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="QEMU, system users and real uids need root"),
]
IMAGES = Path("/var/lib/libvirt/images")
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
OPS = (
    "list",
    "dominfo",
    "getlabel",
    "define",
    "start",
    "destroy",
    "attach-disk",
    "save",
    "restore",
    "undefine",
)
PA = (
    "<RolePolicyDefinition><Role name='Everyone'><ManageVM type='all'/><ControlOperation>"
    "<Accept>" + "".join(f"<operation name='{o}'/>" for o in OPS) + "</Accept>"
    "</ControlOperation></Role></RolePolicyDefinition>"
)


def guest_xml(name: str, image: str) -> str:
    disk = (
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
        f"<source file='{image}'/><target dev='vda' bus='virtio'/></disk>"
    )
    return tiny_guest_xml(name).replace("<devices>", f"<devices>{disk}")


class Realms:
    """What the fixture made: names, paths, the env, the tenants, the realm users."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def user_of(self, realm: str):
        return pwd.getpwnam(dac.realm_user_name(realm))

    def call(self, who: str, command: str, args: dict, *, as_user, src) -> dict:
        return call_as(as_user, self.tenants[who], src, self.env.socket, command, args)


@pytest.fixture
def two_realms(libvirtd):
    tag = f"q{os.getpid() % 100000}x{uuid.uuid4().hex[:4]}"
    ra, rb = f"{tag}a", f"{tag}b"
    made_images = not IMAGES.exists()
    IMAGES.mkdir(mode=0o711, parents=True, exist_ok=True)
    scratch = IMAGES / f"svt-rdac-{uuid.uuid4().hex[:8]}"
    for d in (scratch, scratch / "a", scratch / "b"):
        d.mkdir(mode=0o711)
    for rel in ("a/a.raw", "a/a2.raw", "a/mv.raw", "b/b.raw", "b/steal.raw"):
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "raw", str(scratch / rel), "1M"],
            env=_ENV,
            check=True,
        )
    be = open_backend("libvirt", "qemu:///system")
    env = None
    with local_accounts() as acc:
        try:
            tenants = {k: acc.user(k) for k in ("ta", "tb")}
            env = RealEnv(
                uri="qemu:///system",
                realms="{node}.realms.xml",
                realm_state_dir="{node}.state",
                disk_dirs=str(scratch),
                save_dir="{node}.save",
            )
            ua = "".join(
                f'<User name="{n}"><UserRole role="Everyone"/></User>' for n in tenants.values()
            )
            write_root_file(env.ua, f"<UserConfiguration>{ua}</UserConfiguration>")
            write_root_file(env.pa, PA)
            realms = f"""<Realms>
  <Realm name="{ra}"><Admin user="{tenants["ta"]}"/><VM pattern="{ra}-*"/>
    <Storage pool="{ra}" path="{scratch / "a"}"/></Realm>
  <Realm name="{rb}"><Member user="{tenants["tb"]}"/><VM pattern="{rb}-*"/>
    <Storage pool="{rb}" path="{scratch / "b"}"/></Realm>
</Realms>"""
            write_root_file(Path(f"{env.node}.realms.xml"), realms)
            env.d = env.daemon().start().wait_ready()
            for realm in (ra, rb):  # the project's own set-up: user, uid, category
                r = root_call(env, "realm", {"action": "setup", "realm": realm})
                assert r["status"] == 0, r
                r = root_call(env, "realm", {"action": "setup", "realm": realm})  # idempotent
                assert r["status"] == 0 and "kept" in r["data"]["message"], r
            yield Realms(
                ra=ra,
                rb=rb,
                scratch=scratch,
                env=env,
                tenants={k: pwd.getpwnam(v) for k, v in tenants.items()},
                backend=be,
            )
        finally:
            tear_down_realm_host(be, env, tag, (ra, rb), scratch, IMAGES, made_images)


def realm_category(env, realm: str) -> int:
    from lxml import etree

    doc = etree.parse(f"{env.node}.realms.xml")
    return int(doc.find(f"Realm[@name='{realm}']/Svirt").get("category"))


def test_realm_guests_run_as_their_realm_users_with_their_images_0600(
    two_realms, readable_src, as_user
):
    t = two_realms
    va, vb = f"{t.ra}-web", f"{t.rb}-web"

    def call(who, command, args):
        return t.call(who, command, args, as_user=as_user, src=readable_src)

    for who, vm, img in (("ta", va, "a/a.raw"), ("tb", vb, "b/b.raw")):
        r = call(who, "define", {"xml": guest_xml(vm, str(t.scratch / img)), "file": "g.xml"})
        assert r["status"] == 0, r
        r = call(who, "start", {"domain": vm})
        assert r["status"] == 0, r
    ua, ub = t.user_of(t.ra), t.user_of(t.rb)
    assert ua.pw_uid != ub.pw_uid
    for vm, user, img in ((va, ua, "a/a.raw"), (vb, ub, "b/b.raw")):
        (pid,) = qemu_processes(vm)
        assert dac.process_ids(pid) == (user.pw_uid, user.pw_gid)  # /proc, not our word
        st = os.stat(t.scratch / img)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (user.pw_uid, user.pw_gid, 0o600)

    info = call("ta", "dominfo", {"domain": va})
    assert info["status"] == 0, info
    d = info["data"]
    assert d["realm"] == t.ra
    assert d["dac_label"] == f"+{ua.pw_uid}:+{ua.pw_gid} ({ua.pw_name})"
    assert f"c{realm_category(t.env, t.ra)}" in d["svirt_categories"].split(",")
    assert "SELinux is not enabled" in d["selinux"]
    other = call("tb", "dominfo", {"domain": vb})["data"]
    assert f"c{realm_category(t.env, t.rb)}" in other["svirt_categories"].split(",")
    assert other["svirt_categories"] != d["svirt_categories"]
    from secured_virt.cli.render import render_dominfo

    text = render_dominfo(d)
    assert f"Realm:          {t.ra}\n" in text and "DAC label:      +" in text


def test_a_tenant_cannot_boot_attach_or_restore_another_realms_image(
    two_realms, readable_src, as_user
):
    t = two_realms
    va, vb = f"{t.ra}-db", f"{t.rb}-db"

    def call(who, command, args):
        return t.call(who, command, args, as_user=as_user, src=readable_src)

    a_img, b_img = str(t.scratch / "a/a2.raw"), str(t.scratch / "b/b.raw")
    assert call("ta", "define", {"xml": guest_xml(va, a_img)})["status"] == 0
    assert call("tb", "define", {"xml": guest_xml(vb, b_img)})["status"] == 0
    refused = [
        call("tb", "define", {"xml": guest_xml(f"{t.rb}-thief", a_img)}),
        call("tb", "attach-disk", {"domain": vb, "source": a_img, "target": "vdb"}),
        call("tb", "start", {"domain": va}),
    ]
    # A's guest saved by its tenant; the save file handed to B's save directory by root
    assert call("ta", "start", {"domain": va})["status"] == 0
    assert call("ta", "save", {"domain": va, "file": "a.save"})["status"] == 0
    save_root = Path(f"{t.env.node}.save")
    (save_root / t.tenants["tb"].pw_name).mkdir(mode=0o700, exist_ok=True)
    shutil.copy(save_root / t.tenants["ta"].pw_name / "a.save", save_root / "tb.tmp")
    os.replace(save_root / "tb.tmp", save_root / t.tenants["tb"].pw_name / "a.save")
    refused.append(call("tb", "restore", {"file": "a.save"}))
    for r in refused:
        assert r["status"] == 3, r
        assert "realm" in r["message"], r
    st = os.stat(a_img)
    assert st.st_uid == t.user_of(t.ra).pw_uid  # nothing handed A's image to B
    assert qemu_processes(va) == []  # still saved, not restored by B


def test_the_kernel_refuses_b_s_qemu_a_s_image_when_the_realm_check_fails(two_realms):
    """The realm step switched off (a bug): the kernel's EACCES, in words, exit 1."""
    from secured_virt.access.identity import identify_process
    from secured_virt.config import load_config
    from secured_virt.service import Service

    t = two_realms
    ua, ub = t.user_of(t.ra), t.user_of(t.rb)
    a_img = str(t.scratch / "a/a.raw")
    dac.own_image(a_img, ua.pw_uid, ua.pw_gid)  # as realm A's storage gives it
    svc = Service.from_config(load_config(str(t.env.config), caller_uid=0))
    svc._realm_resources = lambda *a, **k: None  # the bug: no realm check on images
    root = identify_process()
    thief = f"{t.rb}-thief"
    r = svc.handle(root, Request("define", {"xml": guest_xml(thief, a_img)}))
    assert r.status == 0, r.message
    r = svc.handle(root, Request("start", {"domain": thief}))
    assert r.status == 1, r.message
    assert r.message.startswith(
        f"{thief} was not started: the kernel refused its QEMU access to {a_img} "
        "(permission denied)"
    ), r.message
    assert f"runs as uid {ub.pw_uid} ({ub.pw_name})" in r.message
    assert f"belongs to uid {ua.pw_uid} ({ua.pw_name})" in r.message
    assert qemu_processes(thief) == []
    st = os.stat(a_img)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (ua.pw_uid, ua.pw_gid, 0o600)
