"""rbac.load() and read_trusted(): only root-owned regular files nobody else can write."""

from __future__ import annotations

import os

import pytest
from rbac_helpers import OPS, pa_doc, role, ua_doc, user

import rbac

UA = ua_doc(user("alice", "web"))
PA = pa_doc(role("web", ["web1"], [6]))

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to other uids needs root")


def test_good_files_load(write_policy):
    ua, pa = write_policy(UA, PA)
    pol = rbac.load(ua, pa, OPS)
    assert pol.decide("alice", 6, "web1").allowed
    assert pol.digest == rbac.policy_digest(UA, PA)
    # errors name the path as given
    ua.write_bytes(UA.replace(b'role="web"', b'role="wbe"'))
    with pytest.raises(rbac.PolicyError) as ei:
        rbac.load(ua, pa, OPS)
    assert str(ei.value).startswith(f"{ua}:3: user 'alice' is assigned role 'wbe'")
    assert ei.value.file == str(ua)


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640, 0o444, 0o400, 0o755])
def test_acceptable_modes(write_policy, mode):
    ua, pa = write_policy(UA, PA, mode=mode)
    assert rbac.load(ua, pa, OPS).users == ("alice",)


@pytest.mark.parametrize(
    ("mode", "what", "fixed"),
    [
        (0o664, "group writable (mode 0664)", "0644"),
        (0o620, "group writable (mode 0620)", "0600"),
        (0o666, "world writable (mode 0666)", "0644"),
        (0o646, "world writable (mode 0646)", "0644"),
        (0o777, "world writable (mode 0777)", "0755"),
    ],
)
def test_writable_by_others_is_refused_with_the_fix(write_policy, mode, what, fixed):
    ua, pa = write_policy(UA, PA)
    os.chmod(pa, mode)
    with pytest.raises(rbac.UntrustedFileError) as ei:
        rbac.load(ua, pa, OPS)
    assert str(ei.value) == f"{pa} is {what}; run: chmod {fixed} {pa}"
    assert ei.value.file == str(pa)
    os.chmod(pa, int(fixed, 8))
    assert rbac.load(ua, pa, OPS)  # the suggested command fixes it


@needs_root
def test_wrong_owner_is_refused(write_policy):
    ua, pa = write_policy(UA, PA)
    os.chown(ua, 65534, 0)
    with pytest.raises(rbac.UntrustedFileError) as ei:
        rbac.load(ua, pa, OPS)
    assert str(ei.value) == f"{ua} is owned by uid 65534, should be 0; run: chown root {ua}"


@needs_root
def test_required_owner_can_be_changed_explicitly(write_policy):
    ua, pa = write_policy(UA, PA)
    os.chown(ua, 65534, 0)
    os.chown(pa, 65534, 0)
    assert rbac.load(ua, pa, OPS, owner_uid=65534).users == ("alice",)
    os.chown(pa, 0, 0)
    with pytest.raises(rbac.UntrustedFileError, match="should be 65534; run: chown 65534"):
        rbac.load(ua, pa, OPS, owner_uid=65534)


def test_both_files_reported_together(write_policy):
    ua, pa = write_policy(UA, PA)
    os.chmod(ua, 0o666)
    os.chmod(pa, 0o664)
    with pytest.raises(rbac.PolicyError) as ei:
        rbac.load(ua, pa, OPS)
    assert len(ei.value.errors) == 2
    text = str(ei.value)
    assert f"{ua} is world writable" in text and f"{pa} is group writable" in text


def test_symlink_is_refused_even_to_a_good_file(write_policy, tmp_path):
    ua, pa = write_policy(UA, PA)
    link = tmp_path / "link.xml"
    link.symlink_to(pa)
    with pytest.raises(rbac.UntrustedFileError) as ei:
        rbac.load(ua, link, OPS)
    assert str(ei.value) == (
        f"{link} is a symbolic link; trusted files must be regular files: "
        "replace the link with the file it points to"
    )


def test_fifo_is_refused_without_blocking(write_policy, tmp_path):
    ua, _pa = write_policy(UA, PA)
    fifo = tmp_path / "fifo.xml"
    os.mkfifo(fifo, 0o644)
    with pytest.raises(rbac.UntrustedFileError, match=r"is a FIFO \(named pipe\), not a regular"):
        rbac.load(ua, fifo, OPS)


def test_directory_and_device_are_refused(write_policy, tmp_path):
    ua, _pa = write_policy(UA, PA)
    d = tmp_path / "dir.xml"
    d.mkdir(mode=0o755)
    with pytest.raises(rbac.UntrustedFileError, match="is a directory, not a regular file"):
        rbac.load(ua, d, OPS)
    with pytest.raises(rbac.UntrustedFileError, match="is a character device"):
        rbac.read_trusted("/dev/null", max_size=10)


def test_missing_file(write_policy, tmp_path):
    ua, _pa = write_policy(UA, PA)
    missing = tmp_path / "nope.xml"
    with pytest.raises(rbac.UntrustedFileError) as ei:
        rbac.load(ua, missing, OPS)
    assert str(ei.value) == f"{missing} does not exist; create it (owned by root, mode 0644)"


def test_size_limit(write_policy):
    big = PA.replace(b"<RolePolicyDefinition>", b"<RolePolicyDefinition>" + b" " * 5000)
    ua, pa = write_policy(UA, big)
    with pytest.raises(rbac.UntrustedFileError, match=r"is \d+ bytes, more than the limit of 4096"):
        rbac.load(ua, pa, OPS, max_size=4096)
    assert rbac.read_trusted(ua, max_size=4096) == UA
    with pytest.raises(rbac.PolicyError, match="more than the limit of 10"):
        rbac.loads(UA, PA, OPS, max_size=10)


def test_read_trusted_reads_exactly_the_file(tmp_path):
    p = tmp_path / "conf"
    data = bytes(range(256)) * 10000  # larger than one read chunk
    p.write_bytes(data)
    os.chmod(p, 0o600)
    assert rbac.read_trusted(p, max_size=len(data)) == data
    with pytest.raises(rbac.UntrustedFileError):
        rbac.read_trusted(p, max_size=len(data) - 1)
