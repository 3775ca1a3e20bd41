"""config.py: typed keys, defaults, root-only --config, file safety, errors with file:line."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from secured_virt import config as cfgmod
from secured_virt.config import CONFIG_PATH, Config, ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str, mode: int = 0o644) -> str:
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_fixed_path_is_the_documented_one():
    assert CONFIG_PATH == "/etc/secured-virt/secured-virt.conf"


def test_missing_default_file_means_embedded_defaults(tmp_path, monkeypatch):
    monkeypatch.setattr(cfgmod, "CONFIG_PATH", str(tmp_path / "absent.conf"))
    cfg = load_config(caller_uid=1000)
    assert cfg == Config()
    assert cfg.backend == "libvirt" and cfg.uri == "test:///default"
    assert cfg.socket_mode == 0o666 and cfg.auth_timeout_minutes == 5
    assert cfg.auth_operations == frozenset() and cfg.acm is False and cfg.audit_syslog is True


def test_sample_config_in_etc_equals_the_defaults():
    cfg = parse_config((REPO / "etc/secured-virt.conf").read_text(), "etc/secured-virt.conf")
    assert dataclasses.replace(cfg, source=None) == Config()


def test_values_are_typed(tmp_path):
    path = write(
        tmp_path / "c.conf",
        "# comment\n; other comment\n[secured-virt]\n"
        "backend = xl\nacm = yes\naudit_syslog = off\nsocket_mode = 0660\n"
        "request_max_bytes = 4096\nidle_timeout = 2m\nauth_timeout_minutes = 90s\n"
        "auth_operations = destroy, 13, undefine\nua = /srv/ua.xml\n"
        "disk_dirs = /srv/images/, /var/lib/libvirt/images\n",
    )
    cfg = load_config(path, caller_uid=0)
    assert cfg.backend == "xl" and cfg.acm is True and cfg.audit_syslog is False
    assert cfg.socket_mode == 0o660 and cfg.request_max_bytes == 4096
    assert cfg.idle_timeout == 120 and cfg.auth_timeout_minutes == 1.5
    assert cfg.auth_operations == frozenset({"destroy", "undefine"})  # id 13 is destroy
    assert cfg.ua == "/srv/ua.xml" and cfg.pa == Config().pa and cfg.source == path
    assert cfg.disk_dirs == ("/srv/images", "/var/lib/libvirt/images")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.backend = "libvirt"


def test_only_root_may_choose_another_file(tmp_path):
    path = write(tmp_path / "c.conf", "[secured-virt]\nuri = qemu:///system\n")
    with pytest.raises(ConfigError, match=r"only root.*uid 1000.*c\.conf"):
        load_config(path, caller_uid=1000)
    assert load_config(path, caller_uid=0).uri == "qemu:///system"


def test_root_naming_a_missing_file_is_an_error_not_defaults(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(str(tmp_path / "typo.conf"), caller_uid=0)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            "[secured-virt]\nbackend = libvirt\nfrobnicate = 1\n",
            r"c\.conf:3: unknown key 'frobnicate'",
        ),
        ("[secured-virt]\nacm = maybe\n", r"c\.conf:2: bad value for 'acm': expected yes or no"),
        ("[secured-virt]\nbackend = vmware\n", r"c\.conf:2: bad value for 'backend'.*libvirt, xl"),
        ("[secured-virt]\nua = relative/ua.xml\n", r"c\.conf:2: bad value for 'ua'.*absolute"),
        ("[secured-virt]\nua = /etc/../tmp/ua.xml\n", r"c\.conf:2: bad value for 'ua'.*\.\."),
        ("[secured-virt]\nsocket_mode = 666x\n", r"c\.conf:2: bad value for 'socket_mode'"),
        ("[secured-virt]\nrequest_max_bytes = 10\n", r":2: bad value for 'request_max_bytes'"),
        ("[secured-virt]\nuri = a\nuri = b\n", r"c\.conf:3: key 'uri' is already set on line 2"),
        ("uri = a\n", r"c\.conf:1: key 'uri' appears before the \[secured-virt\] section"),
        ("[other]\nuri = a\n", r"c\.conf:1: unknown section \[other\]"),
        ("[secured-virt]\njust text\n", r"c\.conf:2: expected 'key = value'"),
        ("[secured-virt]\nauth_operations = start, fly\n", r":2: bad value for 'auth_operations'"),
        ("[secured-virt]\npam_service = ../evil\n", r":2: bad value for 'pam_service'"),
        ("[secured-virt]\nidle_timeout = forever\n", r":2: bad value for 'idle_timeout'"),
        ("[secured-virt]\ndisk_dirs = /a, images\n", r":2: bad value for 'disk_dirs'.*absolute"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path, text, pattern):
    path = write(tmp_path / "c.conf", text)
    with pytest.raises(ConfigError, match=pattern):
        load_config(path, caller_uid=0)


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "c.conf"
    path.write_bytes(b"[secured-virt]\nuri = ok\nhost_object = \xff\n")
    with pytest.raises(ConfigError, match=r"c\.conf:3: the file is not valid UTF-8"):
        load_config(str(path), caller_uid=0)


@pytest.mark.parametrize(("mode", "why"), [(0o664, "group writable"), (0o646, "world writable")])
def test_writable_by_others_is_refused(tmp_path, mode, why):
    path = write(tmp_path / "c.conf", "[secured-virt]\n", mode)
    with pytest.raises(ConfigError, match=why):
        load_config(path, caller_uid=0)


def test_not_root_owned_is_refused(tmp_path, test_users):
    path = write(tmp_path / "c.conf", "[secured-virt]\nuri = qemu:///system\n", 0o644)
    os.chown(path, test_users["svt-alice"].pw_uid, -1)
    with pytest.raises(ConfigError, match=r"owned by uid \d+, should be 0"):
        load_config(path, caller_uid=0)


def test_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "c.conf"
    os.mkfifo(fifo, 0o644)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(str(fifo), caller_uid=0)


def test_default_path_is_checked_the_same_way(tmp_path, monkeypatch):
    path = write(tmp_path / "secured-virt.conf", "[secured-virt]\n", 0o666)
    monkeypatch.setattr(cfgmod, "CONFIG_PATH", path)
    with pytest.raises(ConfigError, match="world writable"):
        load_config(caller_uid=1000)


def test_symlink_is_refused(tmp_path):
    real = write(tmp_path / "real.conf", "[secured-virt]\n")
    link = tmp_path / "c.conf"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="symbolic link"):
        load_config(str(link), caller_uid=0)
