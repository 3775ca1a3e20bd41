"""Both backends offer exactly the interface the gate is written against (base.Backend)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from secured_virt.backends import base
from secured_virt.backends.libvirt_backend import LibvirtBackend
from secured_virt.backends.xl_backend import XlBackend

PROTOCOL_METHODS = sorted(
    name
    for name, member in vars(base.Backend).items()
    if callable(member) and not name.startswith("_")
)


def test_protocol_lists_the_agreed_operations():
    expected = {
        "list_domains",
        "lookup",
        "pinned",
        "start",
        "shutdown",
        "reboot",
        "reset",
        "destroy",
        "suspend",
        "resume",
        "save",
        "restore",
        "saved_image_xml",
        "define",
        "undefine",
        "create",
        "dumpxml",
        "setmem",
        "setmaxmem",
        "setvcpus",
        "attach_disk",
        "detach_disk",
        "attach_interface",
        "detach_interface",
        "migrate",
        "get_autostart",
        "set_autostart",
        "snapshot_create_as",
        "snapshot_list",
        "snapshot_revert",
        "snapshot_delete",
        "get_metadata",
        "set_metadata",
        "disk_sources",
        "interface_sources",
        "open_console",
        "hostinfo",
        # the catalogue's monitoring and maintenance operations (issue 20)
        "dommemstat",
        "domblkstat",
        "domifstat",
        "managed_save",
        "managed_save_remove",
        "dump",
        "inject_nmi",
        "send_key",
        "get_description",
        "set_description",
        "vcpupin",
        "vcpu_pin_info",
        "screenshot",
        # each realm's storage pool (issue 15)
        "pool_info",
        "ensure_dir_pool",
        "vol_list",
        "vol_info",
        "vol_by_path",
        "vol_create_as",
        "vol_delete",
        "close",
    }
    assert set(PROTOCOL_METHODS) == expected


@pytest.mark.parametrize("impl", [LibvirtBackend, XlBackend], ids=["libvirt", "xl"])
@pytest.mark.parametrize("method", PROTOCOL_METHODS)
def test_signatures_match_the_protocol(impl, method):
    want = inspect.signature(getattr(base.Backend, method))
    have = inspect.signature(getattr(impl, method))
    have_params = dict(have.parameters)
    for name, p in want.parameters.items():
        assert name in have_params, f"{impl.__name__}.{method} lacks parameter {name}"
        q = have_params.pop(name)
        assert q.kind == p.kind, f"{impl.__name__}.{method}({name}) kind differs"
        assert q.default == p.default, f"{impl.__name__}.{method}({name}) default differs"
    for name, q in have_params.items():  # additions must be optional keywords
        assert q.default is not inspect.Parameter.empty, f"{method}: extra required {name}"
        assert q.kind == inspect.Parameter.KEYWORD_ONLY


def test_both_backends_are_backends(tmp_path):
    assert isinstance(LibvirtBackend("test:///default"), base.Backend)
    assert isinstance(XlBackend(xl_config_dir=str(tmp_path)), base.Backend)
    assert LibvirtBackend.name == "libvirt" and XlBackend.name == "xl"


def test_error_types():
    err = base.BackendError("unsupported")
    assert err.code == "unsupported" and str(err) == err.message and "not supported" in str(err)
    nsd = base.NoSuchDomain("vm9")
    assert isinstance(nsd, base.BackendError)
    assert (nsd.code, nsd.name, str(nsd)) == ("no-domain", "vm9", "domain 'vm9' not found")


def test_state_words():
    assert [base.state_word(i) for i in range(8)] == [
        "no state",
        "running",
        "idle",
        "paused",
        "in shutdown",
        "shut off",
        "crashed",
        "pmsuspended",
    ]
    assert base.state_word(42) == "no state"


def test_importing_the_interface_does_not_load_libvirt():
    """Clients (svirsh talking to svirtd) import the interface only; libvirt must stay out."""
    code = (
        "import sys, secured_virt.backends as b; "
        "b.open_backend; print('libvirt' in sys.modules, 'lxml' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]
