"""Issue 14, item 4 (one device allow-list for every path that changes a domain's devices) and
the argument half of item 16 (bad arguments are usage errors before any decision).

``svirsh attach-interface VM direct eth0 --config`` put a macvtap on a host NIC into a domain
whose definition with the same device ``define`` refused.  Now attach-disk and
attach-interface check the device they build with the very tables define uses.  And an
attach-disk with an empty source or a setvcpus count of 1e999999 left an allowed decision
"pending" in the audit log: such requests are now usage errors (exit 2) and nothing is decided
or audited.  On the real libvirt test driver, through the use-case layer.
"""

from __future__ import annotations

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

from secured_virt.confinement import devices
from secured_virt.requests import EXIT_DENIED, EXIT_OK, EXIT_USAGE

UA = "<UserConfiguration><User name='alice'><UserRole role='Web'/></User></UserConfiguration>"
OPS = (
    "define",
    "attach-interface",
    "detach-interface",
    "attach-disk",
    "detach-disk",
    "setvcpus",
    "setmem",
    "setmaxmem",
    "dumpxml",
)
PA = (
    "<RolePolicyDefinition><Role name='Web'>"
    "<ManageVM type='individual'><VM name='alice-web'/></ManageVM><ControlOperation><Accept>"
    + "".join(f"<operation name='{o}'/>" for o in OPS)
    + "</Accept></ControlOperation></Role></RolePolicyDefinition>"
)


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    return d


@pytest.fixture
def svc(svt_env, images):  # noqa: F811
    return service(svt_env, UA, PA, disk_dirs=(str(images),))


def inactive_xml(svc, vm="alice-web") -> str:
    return run(svc, ROOT, "dumpxml", domain=vm, inactive=True).data["xml"]


# -- item 4 ---------------------------------------------------------------------------------
def test_attach_interface_direct_is_refused_like_define_refuses_it(svc):
    alice = ident("alice")
    # define refuses the device ...
    iface = "<interface type='direct'><source dev='eth0' mode='bridge'/></interface>"
    r = run(svc, alice, "define", xml=domain_xml("alice-web", extra=iface), file="d.xml")
    assert r.status == EXIT_USAGE and "macvtap" in r.message
    # ... and so does attach-interface, with the same words, audited as the outcome
    before = len(audit_records(svc))
    r = run(
        svc,
        alice,
        "attach-interface",
        domain="alice-web",
        type="direct",
        source="eth0",
        config=True,
    )
    assert r.status == EXIT_DENIED, r.message
    assert "a host network interface (macvtap)" in r.message
    assert "only allowed in definitions made by root" in r.message
    recs = audit_records(svc)[before:]
    assert {x["op"] for x in recs} == {"attach-interface"}
    assert "macvtap" in recs[-1].get("outcome", "")
    assert "type='direct'" not in inactive_xml(svc) and "eth0" not in inactive_xml(svc)


def test_attach_interface_on_a_network_or_bridge_stays_allowed(svc):
    r = run(
        svc,
        ident("alice"),
        "attach-interface",
        domain="alice-web",
        type="network",
        source="default",
        mac="52:54:00:aa:bb:cc",
        config=True,
    )
    assert r.status == EXIT_OK, r.message
    assert "52:54:00:aa:bb:cc" in inactive_xml(svc)


def test_root_still_attaches_a_direct_interface(svc):
    r = run(
        svc,
        ROOT,
        "attach-interface",
        domain="alice-web",
        type="direct",
        source="eth0",
        config=True,
    )
    assert r.status == EXIT_OK, r.message
    assert "type='direct'" in inactive_xml(svc)


def test_attach_disk_goes_through_the_same_tables_as_define(svc, images):
    """A disk attach is checked as a device of a domain (devices.check_user_device), so the
    device and source rules of define apply too, not only the path rule."""
    r = run(
        svc,
        ident("alice"),
        "attach-disk",
        domain="alice-web",
        source=f"{images}/x.img",
        target="vdb",
        subdriver="vmdk",
        persistent=True,
    )
    assert r.status == EXIT_DENIED and "image format 'vmdk'" in r.message
    el = devices.etree.fromstring("<interface type='direct'><source dev='eth0'/></interface>")
    with pytest.raises(devices.DevicePolicyError, match="macvtap"):
        devices.check_user_device(el, [str(images)])


# -- item 16 (arguments) --------------------------------------------------------------------
BAD = [
    ("attach-disk", {"source": "", "target": "vdb"}, "a disk source path is required"),
    ("attach-disk", {"source": None, "target": "vdb"}, "a disk source path is required"),
    ("attach-disk", {"source": ["/x"], "target": "vdb"}, "a disk source path is required"),
    ("attach-disk", {"source": "/x.img", "target": ""}, "invalid disk target"),
    ("attach-disk", {"source": "/x.img", "target": 7}, "invalid disk target"),
    ("attach-disk", {"source": "/x.img", "target": "vdb", "subdriver": "q c"}, "subdriver"),
    ("attach-interface", {"type": "network", "source": ""}, "interface source"),
    ("attach-interface", {"type": "network", "source": "default", "mac": "zz"}, "MAC"),
    ("detach-interface", {"type": "network", "mac": "not-a-mac"}, "MAC"),
    ("detach-disk", {"target": ""}, "invalid disk target"),
    ("setvcpus", {"count": "1e999999"}, "invalid vCPU count"),
    ("setvcpus", {"count": float("inf")}, "invalid vCPU count"),
    ("setvcpus", {"count": 10**100}, "invalid vCPU count"),
    ("setvcpus", {"count": "9" * 5000}, "invalid vCPU count"),
    ("setvcpus", {"count": True}, "invalid vCPU count"),
    ("setvcpus", {"count": "0"}, "invalid vCPU count"),
    ("setvcpus", {"count": "2.5"}, "invalid vCPU count"),
    ("setvcpus", {"count": None}, "invalid vCPU count"),
    ("setmem", {"size": "9" * 40 + "T"}, "invalid memory size"),
    ("setmem", {"size": "0"}, "invalid memory size"),
    ("setmem", {"size": float("nan")}, "invalid memory size"),
    ("setmaxmem", {"size": ["1G"]}, "invalid memory size"),
]


@pytest.mark.parametrize(("command", "args", "said"), BAD, ids=[f"{c}-{a}" for c, a, _ in BAD])
@pytest.mark.parametrize("who", ["alice", "root"])
def test_bad_arguments_are_usage_errors_and_nothing_is_decided(svc, command, args, said, who):
    caller = ROOT if who == "root" else ident("alice")
    before = audit_records(svc)
    r = run(svc, caller, command, domain="alice-web", **args)
    assert r.status == EXIT_USAGE, r.message
    assert said in r.message
    assert audit_records(svc) == before  # no decision, so no "pending" one either


def test_good_arguments_still_work(svc):
    alice = ident("alice")
    assert run(svc, alice, "setvcpus", domain="alice-web", count="1").status == EXIT_OK
    assert run(svc, alice, "setvcpus", domain="alice-web", count=1).status == EXIT_OK
    r = run(svc, alice, "setmem", domain="alice-web", size="512M", config=True)
    assert r.status == EXIT_OK, r.message
