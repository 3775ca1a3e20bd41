"""Fixtures for the virsh differential tests: a private host (config, UA/PA, audit log, node
copy) whose svirtd serves real other uids, and virsh's own fresh copy of the same node."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "daemon"), str(HERE.parent.parent)]

from diff_helpers import node_copy  # noqa: E402
from svtd_helpers import RealEnv, write_root_file  # noqa: E402

#: VMs svt-bob may see: a prefix of the demo node, so their ids are the same on a node that
#: holds only them (the subset comparison runs virsh on such a node).
BOB_VMS = ("alice-web", "alice-db", "bob-build")

UA = """<UserConfiguration>
  <User name="svt-alice"><UserRole role="Everything"/></User>
  <User name="svt-bob"><UserRole role="Some"/></User>
</UserConfiguration>
"""


def pa_xml(bob_vms=BOB_VMS, all_vms: str = '<ManageVM type="all"/>') -> str:
    """svt-alice may do every operation on every VM; svt-bob every operation on bob_vms."""
    some = "".join(f'<VM name="{n}"/>' for n in bob_vms)
    accept = '<ControlOperation><Accept><operation id="*"/></Accept></ControlOperation>'
    return (
        "<RolePolicyDefinition>"
        f'<Role name="Everything">{all_vms}{accept}</Role>'
        f'<Role name="Some"><ManageVM type="individual">{some}</ManageVM>{accept}</Role>'
        "</RolePolicyDefinition>\n"
    )


@pytest.fixture
def host(test_users):
    """A private host on a fresh copy of the demo node, and its svirtd (fresh state)."""
    if os.geteuid() != 0:
        pytest.skip("svirsh's direct mode and svirtd's policy files need root")
    if not os.access("/usr/bin/virsh", os.X_OK):
        pytest.skip("virsh is missing: install Debian's libvirt-clients (make test does)")
    env = RealEnv()
    write_root_file(env.ua, UA)
    write_root_file(env.pa, pa_xml())
    env.virsh_dir = env.base / "virsh"
    env.d = env.daemon().start().wait_ready()
    yield env
    env.d.stop()
    env.cleanup()


@pytest.fixture
def fresh_node(host):
    """Factory: a fresh copy of the host's node for one virsh connection (optionally only
    some domains), as a test:/// URI."""
    count = [0]

    def make(keep=None) -> str:
        count[0] += 1
        return f"test://{node_copy(host.node, host.virsh_dir / str(count[0]), keep)}"

    return make


@pytest.fixture
def direct_uri(host, tmp_path):
    """Factory: a fresh copy of the node for one svirsh direct-mode run."""
    count = [0]

    def make() -> str:
        count[0] += 1
        d = tmp_path / f"direct{count[0]}"
        d.mkdir()
        dest = d / "node.xml"
        shutil.copy(host.node, dest)
        return f"test://{dest}"

    return make
