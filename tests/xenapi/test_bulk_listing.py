"""The fast path under ``VM.get_all_records`` (issue 16's 50 ms target) changes no answer.

* The libvirt backend's ``listing()`` reads each row's metadata and managed-save image through
  the handle the row was listed by: the same answers as a lookup by name, and when the name
  has meanwhile been given to another domain, never that other domain's owner.
* The Service's ``list`` on that path shows what it showed before (owners, saved state, only
  the caller's VMs), on libvirt's test driver.
* The Xen-API's encoder writes less (no newline per element, bare strings) but every XML-RPC
  parser reads the same values back; a record is a function of ``VM_ROW_FIELDS`` alone, which
  is what makes keeping encoded records per row safe.
"""

from __future__ import annotations

import dataclasses
import shutil
import xmlrpc.client
from pathlib import Path

import pytest

from secured_virt.backends.base import NoSuchDomain
from secured_virt.backends.libvirt_backend import LibvirtBackend
from secured_virt.confinement import vmmeta
from secured_virt.xenapi import records as R
from secured_virt.xenapi.xmlrpc import Encoded, EncodedParts, _wire, dumps_result, encode, success

REPO = Path(__file__).resolve().parents[2]
NODE = REPO / "etc" / "demo" / "node.xml"


@pytest.fixture
def backend(tmp_path):
    node = tmp_path / "node.xml"
    shutil.copy(NODE, node)
    return LibvirtBackend(f"test://{node}")


def test_listing_answers_like_lookups_by_name(backend):
    snap = backend.listing(include_inactive=True)
    assert [d.name for d in snap.domains] == [
        d.name for d in backend.list_domains(include_inactive=True)
    ]
    for d in snap.domains:
        assert snap.metadata(d.name, vmmeta.NS) == backend.get_metadata(d.name, vmmeta.NS)
        assert snap.has_managed_save(d.name) == backend.has_managed_save(d.name)
    # a name the listing does not hold is looked up as before
    active = backend.listing(include_inactive=False)
    off = next(d.name for d in snap.domains if d.id is None)
    assert off not in {d.name for d in active.domains}
    assert active.metadata(off, vmmeta.NS) == backend.get_metadata(off, vmmeta.NS)


def test_a_listed_row_never_shows_another_domains_owner(backend):
    """alice-db is listed, then undefined and its name given to a new domain owned by mallory:
    the listing's row answers for the domain it listed, never with mallory's metadata, which a
    lookup by name now finds.  A row whose metadata was read before the swap keeps what it
    read (the listing reads each domain's metadata once); one read after the swap asks the
    listed handle, whose domain is gone: NoSuchDomain."""
    snap = backend.listing(include_inactive=True)
    assert vmmeta.parse(snap.metadata("alice-db", vmmeta.NS)).owner == "alice"
    unread = backend.listing(include_inactive=True)  # alice-db's metadata not read yet
    backend.undefine("alice-db")
    backend.define(
        "<domain type='test'><name>alice-db</name><memory>65536</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    vmmeta.write(backend, "alice-db", vmmeta.VmMeta(owner="mallory"))
    assert vmmeta.parse(backend.get_metadata("alice-db", vmmeta.NS)).owner == "mallory"
    assert vmmeta.parse(snap.metadata("alice-db", vmmeta.NS)).owner == "alice"
    with pytest.raises(NoSuchDomain):
        unread.metadata("alice-db", vmmeta.NS)


def test_service_list_on_the_listing_path_is_unchanged(tmp_path):
    """alice (WebTeam in the demo's role files) lists her two VMs with their owners; root
    sees all of them; --managed-save marks a saved one; the same rows as a backend without
    ``listing`` (the generic path) gives."""
    from secured_virt.access.identity import Identity
    from secured_virt.config import default_config
    from secured_virt.requests import Request
    from secured_virt.service import Service

    node = tmp_path / "node.xml"
    shutil.copy(NODE, node)
    etc = tmp_path / "etc"
    etc.mkdir()
    for f in ("ua.xml", "pa.xml"):
        shutil.copy(REPO / "etc" / "demo" / f, etc / f)
        (etc / f).chmod(0o644)
    (tmp_path / "log").mkdir(mode=0o700)
    cfg = dataclasses.replace(
        default_config(),
        uri=f"test://{node}",
        ua=str(etc / "ua.xml"),
        pa=str(etc / "pa.xml"),
        audit_log=str(tmp_path / "log" / "audit.log"),
        audit_syslog=False,
        label_store=str(tmp_path / "labels.xml"),
        acm_state_dir=str(tmp_path / "acm"),
    )
    svc = Service.from_config(cfg)
    alice = Identity(uid=5001, gid=5001, user="alice", groups=(5001,), via="xenapi", pid=1)
    root = Identity(uid=0, gid=0, user="root", groups=(0,), via="cli", pid=1)
    args = {"all": True, "label": True, "managed_save": True}
    svc.backend.connection.lookupByName("alice-web").managedSave(0)  # libvirt's own call

    def rows(ident):
        reply = svc.handle(ident, Request("list", dict(args)))
        assert reply.status == 0, reply.message
        return reply.data["domains"]

    fast = {"alice": rows(alice), "root": rows(root)}
    assert [(r["name"], r["owner"], r["state"]) for r in fast["alice"]] == [
        ("alice-db", "alice", "shut off"),
        ("alice-web", "alice", "saved"),
    ]
    assert len(fast["root"]) == 5
    real = svc.backend
    svc._backend = _WithoutListing(real)  # the generic path: list_domains + a lookup per name
    try:
        slow = {"alice": rows(alice), "root": rows(root)}
        for who, got in slow.items():
            for a, b in zip(got, fast[who], strict=True):
                assert {k: v for k, v in a.items() if k != "cpu_time_ns"} == {
                    k: v for k, v in b.items() if k != "cpu_time_ns"
                }, (a, b)
    finally:
        svc._backend = real


class _WithoutListing:
    """A backend as one without ``listing()`` (the xl backend, say) is seen."""

    def __init__(self, backend):
        self._backend = backend

    def __getattr__(self, name):
        if name == "listing":
            raise AttributeError(name)
        return getattr(self._backend, name)


NASTY = ["", "a<b>&c", "tab\tnew\nline", "ünïcødé ☃", "]]>", " lead and trail "]


@pytest.mark.parametrize("text", NASTY)
def test_the_compact_encoding_reads_back_the_same(text):
    value = success(
        {
            "s": text,
            "n": [1, -(2**31), 2**31 - 1, 2**40, True, False, None],
            "d": {"k": text, "e": {}},
            "l": [],
        }
    )
    ours = xmlrpc.client.loads(dumps_result(value))
    theirs = xmlrpc.client.loads(
        xmlrpc.client.dumps((_wire(value),), methodresponse=True, allow_none=True)
    )
    assert ours == theirs
    assert b"<string>" not in dumps_result(value) and b"</member>\n" not in dumps_result(value)
    # an encoded part is written as it is, inside any struct
    wrapped = success({"x": encode({"s": text})})
    assert xmlrpc.client.loads(dumps_result(wrapped))[0][0]["Value"] == {"x": {"s": text}}


def test_an_answer_in_byte_parts_is_the_answer_in_one_string():
    """get_all_records hands its kept members over as UTF-8 byte parts (EncodedParts), joined
    once into the answer: the same bytes as the one-string encoding, non-ASCII included,
    wherever the parts sit in the result; ``encode`` (which keeps a str) refuses them."""
    recs = {f"ref-{i}": {"name_label": name, "n": i} for i, name in enumerate(NASTY)}
    members = [f"<member><name>{ref}</name>{encode(r).xml}</member>" for ref, r in recs.items()]
    whole = Encoded("<value><struct>" + "".join(members) + "</struct></value>")
    parts = EncodedParts([b"<value><struct>", *(m.encode() for m in members), b"</struct></value>"])
    assert dumps_result(success(parts)) == dumps_result(success(whole))
    assert xmlrpc.client.loads(dumps_result(success(parts)))[0][0]["Value"] == recs
    nested = success({"a": "\u2603", "x": parts, "z": [parts, 1]})
    assert xmlrpc.client.loads(dumps_result(nested))[0][0]["Value"] == {
        "a": "\u2603",
        "x": recs,
        "z": [recs, 1],
    }
    with pytest.raises(TypeError, match="dumps_result only"):
        encode({"x": parts})


def test_a_vm_record_depends_on_the_row_fields_alone():
    row = {
        "uuid": "u",
        "name": "n",
        "state": "running",
        "id": 3,
        "max_mem_kib": 1024,
        "mem_kib": 512,
        "vcpus": 2,
        "acm_label": "ACM:p:l",
        "owner": "o",
        "realm": "r",
        "persistent": True,
        "autostart": False,
    }
    assert set(row) == set(R.VM_ROW_FIELDS)
    base = R.vm_record(row, "h")
    noise = {**row, "cpu_time_ns": 99, "os_type": "xen", "title": "t", "managed_save": True}
    assert R.vm_record(noise, "h") == base
    for f in R.VM_ROW_FIELDS:
        other = {**row, f: {"uuid": "v", "name": "m", "state": "paused", "id": 4}.get(f, 7)}
        if f in ("persistent", "autostart"):
            other[f] = not row[f]
        assert R.vm_record(other, "h") != base, f


def test_a_vm_record_has_xapis_wire_shape():
    """Integer fields as decimal strings (xapi sends every int field so, xend stringified
    every number), other_config only with keys that say something; the names tools read."""
    row = {"uuid": "u", "name": "n", "state": "shut off", "id": None, "max_mem_kib": 2**22,
           "mem_kib": 2**21, "vcpus": 2, "acm_label": None, "owner": "o", "realm": None,
           "persistent": True, "autostart": False}  # fmt: skip
    rec = R.vm_record(row, "h")
    assert rec["domid"] == "-1" and rec["memory_static_max"] == str(2**32)
    assert rec["memory_target"] == str(2**31) and rec["VCPUs_max"] == rec["VCPUs_at_startup"] == "2"
    assert rec["power_state"] == "Halted" and rec["resident_on"] == "OpaqueRef:NULL"
    assert rec["is_a_template"] is False and rec["is_control_domain"] is False
    assert rec["other_config"] == {"owner": "o"}  # persistent, no autostart: the usual case
    body = dumps_result(success({"u": encode(rec)}))
    assert b"<int>" not in body and b"realm" not in body
    assert xmlrpc.client.loads(body)[0][0]["Value"] == {"u": rec}
    running = R.vm_record({**row, "state": "running", "id": 7, "realm": "r"}, "h")
    assert running["domid"] == "7" and running["resident_on"] == "h"
    assert running["other_config"] == {"owner": "o", "realm": "r"}
    odd = R.vm_record({**row, "persistent": False, "autostart": True, "owner": None}, "h")
    assert odd["other_config"] == {"persistent": "false", "autostart": "true"}


def test_the_writer_refuses_what_xml_rpc_cannot_carry():
    loop: list = []
    loop.append(loop)
    with pytest.raises(TypeError, match="nested deeper"):
        dumps_result(success(loop))
    with pytest.raises(TypeError, match="cannot marshal object"):
        dumps_result(success(object()))
    # what it can: floats, bytes (base64), int subclasses such as Xen's XSERR codes
    from policy.errors import Xserr

    value = {"f": 1.5, "b": b"\x00\xff", "e": Xserr.BAD_LABEL, "t": (1, "x")}
    got = xmlrpc.client.loads(dumps_result(success(value)))[0][0]["Value"]
    assert got == {"f": 1.5, "b": xmlrpc.client.Binary(b"\x00\xff"), "e": int(Xserr.BAD_LABEL),
                   "t": [1, "x"]}  # fmt: skip
