"""secured_virt.testing.libvirtd says exactly what is missing instead of failing obscurely."""

from __future__ import annotations

from secured_virt.testing import libvirtd as helper


def test_non_root_without_daemon_gets_a_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(helper, "LIBVIRT_SOCK", tmp_path / "no-sock")
    monkeypatch.setattr(helper.os, "geteuid", lambda: 1000)
    status = helper.ensure_libvirtd()
    assert not status.ok
    assert "needs root" in status.reason
    assert status.stop() is True  # nothing was started, nothing to stop


def test_missing_programs_are_named_with_the_packages(monkeypatch, tmp_path):
    monkeypatch.setattr(helper, "LIBVIRT_SOCK", tmp_path / "no-sock")
    monkeypatch.setattr(helper.os, "geteuid", lambda: 0)
    monkeypatch.setattr(helper, "LIBVIRTD", tmp_path / "libvirtd")
    status = helper.ensure_libvirtd()
    assert not status.ok
    assert str(tmp_path / "libvirtd") in status.reason
    assert helper.PACKAGES in status.reason


def test_stale_socket_file_is_not_a_running_daemon(tmp_path):
    import socket

    path = tmp_path / "sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens
    assert path.exists() and helper._answers(path) is False
    assert helper._answers(tmp_path / "none") is False


def test_tiny_guest_is_small_diskless_and_tcg():
    from lxml import etree

    root = etree.fromstring(helper.tiny_guest_xml("svt-x").encode())
    assert root.get("type") == "qemu"
    assert root.findtext("memory") == "32" and root.find("memory").get("unit") == "MiB"
    assert root.find("devices/disk") is None and root.find("devices/graphics") is None
    assert root.find("devices/console").get("type") == "pty"


def test_qemu_processes_finds_none_for_an_unknown_guest():
    # the positive case (a real guest's pid) is checked in test_libvirt_qemu_integration
    assert helper.qemu_processes("svt-no-such-guest-here") == []
