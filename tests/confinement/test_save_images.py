"""Issue 19: users list and delete their own save images (save-list, save-delete), decided
per VM like everything else, inside their root-only save directory, never following a link.

The Service on the libvirt test driver with real test users (svt-alice owns her VMs, svt-bob
his); images are made by the real save path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from fence_helpers import (
    ROOT,
    audit_records,
    domain_xml,
    ident,
    run,
    service,
    svt_env,  # noqa: F401 - fixture
)

from secured_virt.requests import EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_USAGE

OPS = "".join(
    f"<operation name='{o}'/>"
    for o in ("define", "start", "save", "restore", "save-list", "save-delete", "dominfo")
)
UA = (
    "<UserConfiguration>"
    "<User name='svt-alice'><UserRole role='Tenant'/></User>"
    "<User name='svt-bob'><UserRole role='Tenant'/></User>"
    "</UserConfiguration>"
)
PA = (
    "<RolePolicyDefinition>"
    f"<Role name='Tenant'><ManageVM type='owned'/><ControlOperation><Accept>{OPS}"
    "</Accept></ControlOperation></Role></RolePolicyDefinition>"
)


@pytest.fixture
def who(test_users):
    return {n: ident(n, uid=pw.pw_uid) for n, pw in test_users.items()}


@pytest.fixture
def svc(svt_env, who):  # noqa: F811
    s = service(svt_env, UA, PA)
    for user, vm in (("svt-alice", "alice-vm"), ("svt-bob", "bob-vm")):
        assert run(s, who[user], "define", xml=domain_xml(vm)).status == EXIT_OK
        assert run(s, who[user], "start", domain=vm).status == EXIT_OK
        r = run(s, who[user], "save", domain=vm, file=f"{vm}.img")
        assert r.status == EXIT_OK, r.message
    return s


def files(reply) -> list[str]:
    assert reply.status == EXIT_OK, reply.message
    return [i["file"] for i in reply.data["images"]]


def test_each_user_lists_her_own_images(svc, who):
    r = run(svc, who["svt-alice"], "save-list")
    assert files(r) == ["alice-vm.img"]
    assert r.data["images"][0]["domain"] == "alice-vm" and r.data["images"][0]["bytes"] > 0
    assert files(run(svc, who["svt-bob"], "save-list")) == ["bob-vm.img"]
    # root looks into a user's directory; a user may not
    assert files(run(svc, ROOT, "save-list", user="svt-alice")) == ["alice-vm.img"]
    r = run(svc, who["svt-bob"], "save-list", user="svt-alice")
    assert r.status == EXIT_USAGE and "root's alone" in r.message
    assert audit_records(svc)[-1]["op"] == "save-list"


def test_delete_removes_only_her_image_and_is_audited(svc, who):
    alice_dir = Path(svc.config.save_dir) / "svt-alice"
    r = run(svc, who["svt-alice"], "save-delete", file="alice-vm.img")
    assert r.status == EXIT_OK, r.message
    assert not (alice_dir / "alice-vm.img").exists()
    last = audit_records(svc)[-1]
    assert last["op"] == "save-delete" and last["outcome"] == "ok"
    assert files(run(svc, who["svt-alice"], "save-list")) == []
    # a path is not a name: nothing outside her directory can be named
    r = run(svc, who["svt-alice"], "save-delete", file="../svt-bob/bob-vm.img")
    assert r.status == EXIT_USAGE
    assert (Path(svc.config.save_dir) / "svt-bob" / "bob-vm.img").exists()
    r = run(svc, who["svt-alice"], "save-delete", file="alice-vm.img")
    assert r.status == EXIT_FAILED and "no save image" in r.message


def test_an_image_of_someone_elses_vm_is_neither_shown_nor_deleted(svc, who):
    """Root put bob's image into alice's directory: her roles give her nothing on bob's VM,
    so she neither sees it nor deletes it (refused, audited); root still does."""
    alice_dir = Path(svc.config.save_dir) / "svt-alice"
    src = Path(svc.config.save_dir) / "svt-bob" / "bob-vm.img"
    (alice_dir / "bobs.img").write_bytes(src.read_bytes())
    assert files(run(svc, who["svt-alice"], "save-list")) == ["alice-vm.img"]
    r = run(svc, who["svt-alice"], "save-delete", file="bobs.img")
    assert r.status == EXIT_DENIED, r.message
    assert (alice_dir / "bobs.img").exists()
    last = audit_records(svc)[-1]
    assert last["op"] == "save-delete" and last["verdict"] != "allowed"
    assert sorted(files(run(svc, ROOT, "save-list", user="svt-alice"))) == [
        "alice-vm.img",
        "bobs.img",
    ]


def test_a_planted_link_is_never_followed(svc, who, tmp_path):
    alice_dir = Path(svc.config.save_dir) / "svt-alice"
    victim = tmp_path / "victim"
    victim.write_text("root's")
    os.symlink(victim, alice_dir / "link.img")
    assert "link.img" not in files(run(svc, who["svt-alice"], "save-list"))
    r = run(svc, who["svt-alice"], "save-delete", file="link.img")
    assert r.status != EXIT_OK
    assert victim.read_text() == "root's" and os.path.islink(alice_dir / "link.img")
