"""sVirt through the service (issue 15): every start, create, restore and running revert gives
the VM a category pair no other running VM holds, written to its live metadata and shown by
dominfo; a failed start leaves no pair behind; ``svirt = no`` turns it off.

Real Service on the libvirt test driver (tests/frontend/conftest.py's root-owned
configuration), as root and as a real test user who owns her VMs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location(
    "fence_helpers_for_svirt", HERE.parent / "confinement" / "fence_helpers.py"
)
fh = importlib.util.module_from_spec(_spec)
sys.modules.setdefault(_spec.name, fh)
_spec.loader.exec_module(fh)
svt_env = fh.svt_env  # fixture

from secured_virt.confinement import vmmeta  # noqa: E402
from secured_virt.requests import EXIT_FAILED, EXIT_OK  # noqa: E402

OPS = "".join(
    f"<operation name='{o}'/>"
    for o in ("define", "create", "start", "destroy", "dominfo", "getlabel", "save", "restore")
)
UA = (
    "<UserConfiguration><User name='svt-alice'><UserRole role='Tenant'/></User></UserConfiguration>"
)
PA = (
    "<RolePolicyDefinition>"
    f"<Role name='Tenant'><ManageVM type='owned'/><ControlOperation><Accept>{OPS}"
    "</Accept></ControlOperation></Role></RolePolicyDefinition>"
)


def xml(name: str) -> str:
    return fh.domain_xml(name)


@pytest.fixture
def alice(test_users):
    return fh.ident("svt-alice", uid=test_users["svt-alice"].pw_uid)


@pytest.fixture
def svc(svt_env):
    return fh.service(svt_env, UA, PA, svirt=True)


def live_pair(svc, name: str) -> str | None:
    return vmmeta.parse(svc.backend.get_metadata(name, vmmeta.NS)).categories


def pair_of(svc, name: str) -> str | None:
    r = fh.run(svc, fh.ROOT, "dominfo", domain=name)
    assert r.status == EXIT_OK, r.message
    return r.data.get("svirt_categories")


def test_running_vms_hold_distinct_pairs_shown_by_dominfo(svc, alice):
    names = [f"vm{i}" for i in range(6)]
    for n in names:
        assert fh.run(svc, alice, "define", xml=xml(n)).status == EXIT_OK
        r = fh.run(svc, alice, "start", domain=n)
        assert r.status == EXIT_OK, r.message
    pairs = [pair_of(svc, n) for n in names]
    assert all(pairs), pairs
    assert len(set(pairs)) == len(pairs)
    for n, p in zip(names, pairs, strict=True):
        assert live_pair(svc, n) == p  # recorded in the live metadata
        lo, hi = (int(c[1:]) for c in p.split(","))
        assert 0 <= lo < hi <= 1023
    # the owner sees it too (she may getlabel her VMs); a stopped VM holds none
    mine = fh.run(svc, alice, "dominfo", domain="vm0")
    assert mine.data["svirt_categories"] == pairs[0]
    assert fh.run(svc, alice, "destroy", domain="vm0").status == EXIT_OK
    assert pair_of(svc, "vm0") is None
    # the freed pair's VM starts again with a pair that is still unique among those running
    assert fh.run(svc, alice, "start", domain="vm0").status == EXIT_OK
    again = [pair_of(svc, n) for n in names]
    assert len(set(again)) == len(again)


def test_create_gets_a_pair_and_a_failed_start_leaves_none(svc, alice):
    r = fh.run(svc, alice, "create", xml=xml("transient"), file="t.xml")
    assert r.status == EXIT_OK, r.message
    assert pair_of(svc, "transient")
    held_before = {x.pair for x in svc.categories.running() if x.pair}
    # a second start of a running VM fails in the hypervisor: no new pair is taken
    r = fh.run(svc, alice, "start", domain="transient")
    assert r.status == EXIT_FAILED
    assert {x.pair for x in svc.categories.running() if x.pair} == held_before


def test_restore_gets_a_pair(svc):
    assert fh.run(svc, fh.ROOT, "define", xml=xml("saved")).status == EXIT_OK
    assert fh.run(svc, fh.ROOT, "start", domain="saved").status == EXIT_OK
    first = pair_of(svc, "saved")
    image = Path(svc.config.save_dir) / "saved.img"
    image.parent.mkdir(parents=True, exist_ok=True)
    assert fh.run(svc, fh.ROOT, "save", domain="saved", file=str(image)).status == EXIT_OK
    assert pair_of(svc, "saved") is None
    r = fh.run(svc, fh.ROOT, "restore", file=str(image))
    assert r.status == EXIT_OK, r.message
    assert pair_of(svc, "saved") and first


def test_svirt_off_gives_no_pairs(svt_env, alice):
    svc = fh.service(svt_env, UA, PA, svirt=False)
    assert svc.categories is None
    assert fh.run(svc, alice, "define", xml=xml("plain")).status == EXIT_OK
    assert fh.run(svc, alice, "start", domain="plain").status == EXIT_OK
    assert pair_of(svc, "plain") is None
