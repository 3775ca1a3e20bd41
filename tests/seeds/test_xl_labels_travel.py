"""Seed 001 on Xen's xl: a label travels with the save image as (label name, policy name) and
becomes the restoring host's own ssidref; under a policy of another name the restore is
refused before the domain runs.

There is no Xen here, so ``xl`` is mocked as in the other xl tests (tests/backends/xlfake.py),
one mock per host: each host has its own xl path, its own /etc/xen and its own running set,
and ``xl save`` writes a real xl save image (the recorded one).  Everything else is real: the
images on disk, the record stamped into them, the Service with sHype/ACM on, the policies.
"""

from __future__ import annotations

import json
import shutil
import struct

import pytest

from secured_virt.backends.base import BackendError
from secured_virt.backends.xl_parse import read_save_header
from secured_virt.backends.xl_record import RECORD_MAGIC, make_record, stamp
from secured_virt.requests import EXIT_DENIED

from .conftest import ROOT, run
from .xlhosts import CLIENT, XL_DATA, make_hosts, renumbered_client, xl_host

WEB_UUID = "6f1c2f9a-8a3d-4c5e-9b7f-2d1e0a4b5c6d"
WEB_DISK = "phy:/dev/vg0/web-01"


@pytest.fixture
def hosts(mocker, tmp_path):
    return make_hosts(mocker, tmp_path)


@pytest.fixture
def saved(hosts, svt_env, tmp_path):
    """web-01 (alice's, dom_Fun) saved on host 1 through the service."""
    xl1 = hosts("host1", {"Domain-0": 0})
    host1 = xl_host(svt_env, tmp_path / "acm1", CLIENT.read_bytes(), xl1)
    r = run(
        host1,
        ROOT,
        "setlabel",
        domain=WEB_DISK,
        label="res_LogicalDiskPartition2(hda2)",
        resource=True,
    )
    assert r.ok, r.message
    hosts.fakes[xl1.xl_path].running["web-01"] = 3  # started (xl create) under that policy
    assert run(host1, ROOT, "dominfo", domain="web-01").data["security"]["ssidref"] == 196611
    image = tmp_path / "web-01.save"
    r = run(host1, ROOT, "save", domain="web-01", file=str(image))
    assert r.ok, r.message
    return host1, image


def test_save_stamps_owner_and_label_into_the_image(saved):
    _host1, image = saved
    header = read_save_header(str(image))
    assert header.record == {
        "version": 1,
        "name": "web-01",
        "uuid": WEB_UUID,
        "owner": "alice",
        "label": {"policy": "example.client_v1", "name": "dom_Fun"},
    }
    # xl's own config is still there, meaning the same, and the memory image did not move
    original = read_save_header(str(XL_DATA / "web-01.save")).config
    assert header.config == original
    assert image.stat().st_size == (XL_DATA / "web-01.save").stat().st_size
    src = (XL_DATA / "web-01.save").read_bytes()
    body = 48 + struct.unpack("<I", src[44:48])[0]
    assert image.read_bytes()[body:] == src[body:]


def test_restore_on_a_second_host_gets_the_label_and_its_local_ssidref(
    saved, hosts, svt_env, tmp_path
):
    host1, image = saved
    first = host1.acm.active.ssidref("dom_Fun")
    # host 2: same policy name, numbers shifted; no config file for web-01 there at all
    xl2 = hosts("host2", {"Domain-0": 0}, configs=())
    host2 = xl_host(svt_env, tmp_path / "acm2", renumbered_client(), xl2)
    r = run(
        host2,
        ROOT,
        "setlabel",
        domain=WEB_DISK,
        label="res_LogicalDiskPartition2(hda2)",
        resource=True,
    )
    assert r.ok, r.message
    r = run(host2, ROOT, "restore", file=str(image))
    assert r.ok, r.message
    sec = run(host2, ROOT, "dominfo", domain="web-01").data["security"]
    assert sec["label"] == "dom_Fun" and sec["policy"] == "example.client_v1"
    assert sec["ssidref"] == host2.acm.active.ssidref("dom_Fun") != first
    assert host2.acm.vm_label("web-01") == "ACM:example.client_v1:dom_Fun"
    # the owner came along too, so alice's grants scoped to her VMs still apply there
    assert run(host2, ROOT, "dominfo", domain="web-01").data["owner"] == "alice"
    # its label lives in a transient config while it runs, and goes when it is destroyed
    transient = tmp_path / "host2" / "run" / "web-01.cfg"
    assert "label=dom_Fun" in transient.read_text()
    assert run(host2, ROOT, "destroy", domain="web-01").ok
    assert not transient.exists()


def test_restore_under_a_policy_of_another_name_is_refused(saved, hosts, svt_env, tmp_path):
    _host1, image = saved
    xl3 = hosts("host3", {"Domain-0": 0}, configs=())
    other = CLIENT.read_bytes().replace(b"example.client_v1", b"example.other")
    host3 = xl_host(svt_env, tmp_path / "acm3", other, xl3)
    r = run(host3, ROOT, "restore", file=str(image))
    assert r.status == EXIT_DENIED and r.check == "acm", r.message
    assert "example.client_v1" in r.message
    assert ["restore", "--", str(image)] not in hosts.fakes["/opt/host3/sbin/xl"].argvs
    assert "web-01" not in hosts.fakes["/opt/host3/sbin/xl"].running


def test_the_image_label_beats_a_stale_config_file_of_that_name(saved, hosts, svt_env, tmp_path):
    """Host 2 has a web-01.cfg of its own saying dom_HomeBanking for another UUID: the
    image's record (the VM that was saved) decides, not a file that happens to share the
    name."""
    _host1, image = saved
    xl2 = hosts("host2", {"Domain-0": 0})
    cfg = tmp_path / "host2" / "etc-xen" / "web-01.cfg"
    cfg.write_text(
        cfg.read_text()
        .replace("dom_Fun", "dom_HomeBanking")
        .replace(WEB_UUID, "11111111-2222-4333-8444-555555555555")
    )
    image_xml = xl2.saved_image_xml(str(image))
    assert 'name="dom_Fun"' in image_xml and "dom_HomeBanking" not in image_xml


def test_an_image_without_a_record_still_reads_the_local_config(hosts):
    """Images saved by plain xl carry no record: the config file of that name decides."""
    xl1 = hosts("host1", {"Domain-0": 0})
    assert read_save_header(str(XL_DATA / "web-01.save")).record is None
    assert 'name="dom_Fun"' in xl1.saved_image_xml(str(XL_DATA / "web-01.save"))


def test_a_record_that_does_not_match_the_image_or_is_damaged_is_refused(hosts, tmp_path):
    xl1 = hosts("host1", {"Domain-0": 0})
    image = tmp_path / "x.save"
    shutil.copy(XL_DATA / "web-01.save", image)
    stamp(str(image), make_record("db.prod", WEB_UUID, "bob", "example.client_v1", "dom_Fun"))
    with pytest.raises(BackendError, match=r"record names domain db\.prod"):
        xl1.saved_image_xml(str(image))
    stamp(str(image), make_record("web-01", WEB_UUID, "alice", "example.client_v1", "dom_Fun"))
    raw = bytearray(image.read_bytes())
    at = raw.index(RECORD_MAGIC) + len(RECORD_MAGIC) + 4
    raw[at : at + 1] = b"["  # the record's JSON no longer parses
    image.write_bytes(bytes(raw))
    with pytest.raises(BackendError, match="label cannot be known"):
        xl1.saved_image_xml(str(image))


def test_stamping_an_image_with_no_room_copies_it_with_a_longer_header(tmp_path):
    """A compact config leaves no room: the image is rewritten once, body unchanged."""
    src = (XL_DATA / "web-01.save").read_bytes()
    optlen = struct.unpack("<I", src[44:48])[0]
    cfglen = struct.unpack("<I", src[48:52])[0]
    config = json.loads(src[52 : 52 + cfglen].rstrip(b"\x00"))
    compact = json.dumps(config, separators=(",", ":")).encode() + b"\x00"
    body = src[48 + optlen :]
    tight = src[:44] + struct.pack("<I", 4 + len(compact)) + struct.pack("<I", len(compact))
    image = tmp_path / "tight.save"
    image.write_bytes(tight + compact + body)
    stamp(str(image), make_record("web-01", WEB_UUID, None, "example.client_v1", "dom_Fun"))
    header = read_save_header(str(image))
    assert header.config == config and header.record["label"]["name"] == "dom_Fun"
    assert image.read_bytes().endswith(body)
