"""Our per-VM metadata: owner and label, and what users may put in a domain XML."""

import pytest

from secured_virt.confinement import vmmeta

DOM = """<domain type='test'><name>web1</name><memory>1024</memory>
<metadata><svirt:vm xmlns:svirt="https://secured-virt.org/xmlns/svirt/1">
<svirt:owner>mallory</svirt:owner><svirt:label policy="p" name="dom_Secret"/></svirt:vm>
</metadata><os><type>hvm</type></os>{extra}</domain>"""


def test_roundtrip():
    m = vmmeta.VmMeta("alice", "example.client_v1", "dom_Fun")
    assert vmmeta.parse(m.to_xml()) == m
    assert m.attrs() == {"owner": "alice", "label": "dom_Fun"}


def test_user_cannot_claim_owner_or_label_through_xml():
    name, xml = vmmeta.prepare_user_domain_xml(DOM.format(extra=""), "alice", privileged=False)
    _, _, meta = vmmeta.from_domain_xml(xml)
    assert name == "web1" and meta == vmmeta.VmMeta(owner="alice")


@pytest.mark.parametrize(
    "extra,what",
    [
        ("<devices><emulator>/tmp/evil</emulator></devices>", "emulator"),
        ("<devices><hostdev mode='subsystem' type='pci'/></devices>", "hostdev"),
        (
            "<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
            "<qemu:arg value='-x'/></qemu:commandline>",
            "commandline",
        ),
    ],
)
def test_dangerous_elements_refused_for_users_only(extra, what):
    with pytest.raises(vmmeta.DomainXmlError, match=what):
        vmmeta.prepare_user_domain_xml(DOM.format(extra=extra), "alice", privileged=False)
    vmmeta.prepare_user_domain_xml(DOM.format(extra=extra), None, privileged=True)


@pytest.mark.parametrize(
    "xml,msg",
    [
        ("<domain><name>x</name>", "not well-formed"),
        ("<!DOCTYPE d [<!ENTITY e 'x'>]><domain><name>&e;</name></domain>", "DOCTYPE"),
        ("<network><name>x</name></network>", "expected a <domain>"),
        ("<domain><memory>1</memory></domain>", "no <name>"),
    ],
)
def test_bad_domain_xml(xml, msg):
    with pytest.raises(vmmeta.DomainXmlError, match=msg):
        vmmeta.prepare_user_domain_xml(xml, "alice", privileged=False)


def test_os_host_files_refused_for_users():
    xml = (
        "<domain type='test'><name>k</name><memory>1024</memory><os><type>hvm</type>"
        "<kernel>/boot/vmlinuz</kernel></os></domain>"
    )
    with pytest.raises(vmmeta.DomainXmlError, match="kernel"):
        vmmeta.prepare_user_domain_xml(xml, "alice", privileged=False)


def test_pty_serial_console_is_fine_for_users():
    xml = (
        "<domain type='test'><name>k</name><memory>1024</memory><os><type>hvm</type></os>"
        "<devices><serial type='pty'/><console type='pty'/></devices></domain>"
    )
    name, _ = vmmeta.prepare_user_domain_xml(xml, "alice", privileged=False)
    assert name == "k"
