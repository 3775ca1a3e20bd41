"""The category pair in secured-virt's domain metadata: it round-trips with the rest of
<svirt:vm>, and a caller cannot bring one in through the domain XML (prepare_user_domain_xml
drops every element of our namespace), so a pair is only ever one shype.categories wrote."""

from __future__ import annotations

from secured_virt.confinement import vmmeta
from secured_virt.testing.libvirtd import tiny_guest_xml


def test_categories_round_trip_beside_owner_and_label():
    meta = vmmeta.VmMeta("alice", "example.client_v1", "dom_Fun", "c12,c845")
    assert "<svirt:categories>c12,c845</svirt:categories>" in meta.to_xml()
    assert vmmeta.parse(meta.to_xml()) == meta
    assert vmmeta.parse(vmmeta.VmMeta(owner="bob").to_xml()).categories is None


def test_a_callers_xml_cannot_claim_a_pair():
    claim = (
        f'<metadata><svirt:vm xmlns:svirt="{vmmeta.NS}"><svirt:categories>c1,c2'
        "</svirt:categories></svirt:vm></metadata>"
    )
    xml = tiny_guest_xml("claim").replace("</domain>", claim + "</domain>")
    _name, out = vmmeta.prepare_user_domain_xml(xml, "mallory", privileged=False)
    _n, _u, meta = vmmeta.from_domain_xml(out)
    assert meta == vmmeta.VmMeta(owner="mallory")
