"""Seed 001's config spellings on xl: ``access_control = ['policy=P,label=L']``,
``acm_label = ['labelname=L,policyname=P']`` and a legacy ``ssidref = N`` (translated through
the active policy's map, with a warning naming file:line) all give the domain its label; two
labels that disagree are refused with both lines named.  Through the real Service with
sHype/ACM on, over a mocked xl (there is no Xen here)."""

from __future__ import annotations

import logging

import pytest

import policy
from secured_virt.backends.base import BackendError
from secured_virt.backends.xl_cfg import XlConfig
from secured_virt.backends.xl_model import label_from_config
from secured_virt.requests import EXIT_DENIED

from .conftest import ROOT, run
from .xlhosts import make_hosts, xl_host

CLIENT = policy.examples()["example.client_v1"]
POLICY = "example.client_v1"


@pytest.fixture
def host(mocker, tmp_path, svt_env):
    """A host with web-01's config and example.client_v1 loaded, web-01 not running."""
    make = make_hosts(mocker, tmp_path)
    xl = make("host1", {"Domain-0": 0})
    svc = xl_host(svt_env, tmp_path / "acm", CLIENT.read_bytes(), xl)
    cfg = tmp_path / "host1" / "etc-xen" / "web-01.cfg"
    base = "\n".join(ln for ln in cfg.read_text().splitlines() if "access_control" not in ln)

    def label_lines(*lines: str) -> None:
        cfg.write_text(base + "\n" + "\n".join(lines) + "\n")

    return svc, label_lines, cfg


def security(svc):
    r = run(svc, ROOT, "dominfo", domain="web-01")
    assert r.ok, r.message
    return r.data["security"]


@pytest.mark.parametrize(
    "line",
    [
        "access_control = ['policy=example.client_v1,label=dom_Fun']",
        'access_control = [ "policy=example.client_v1, label=dom_Fun" ]',
        "acm_label = ['labelname=dom_Fun,policyname=example.client_v1']",
        "acm_label = [ 'labelname=dom_Fun, policyname=example.client_v1' ]",
    ],
)
def test_named_spellings_give_the_label(host, line):
    svc, label_lines, _cfg = host
    label_lines(line)
    sec = security(svc)
    assert (sec["policy"], sec["label"], sec["ssidref"]) == (POLICY, "dom_Fun", 196611)
    assert svc.acm.vm_label("web-01") == f"ACM:{POLICY}:dom_Fun"


@pytest.mark.parametrize("value", ["196611", "0x00030003"])
def test_legacy_ssidref_is_read_through_the_active_map_with_a_warning(host, value, caplog):
    svc, label_lines, cfg = host
    label_lines(f"ssidref = {value}")
    lineno = len(cfg.read_text().splitlines())
    with caplog.at_level(logging.WARNING, logger="secured_virt.backends.xl_labels"):
        sec = security(svc)
    assert (sec["policy"], sec["label"]) == (POLICY, "dom_Fun")
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"{cfg}:{lineno}: legacy ssidref = 196611" in said and "access_control" in said


def test_an_ssidref_the_active_policy_lacks_is_refused_not_unlabelled(host):
    svc, label_lines, _cfg = host
    label_lines("ssidref = 0x00630063")
    assert svc.acm.vm_label("web-01") == "ACM:__SSIDREF__:0x00630063"
    r = run(svc, ROOT, "start", domain="web-01")
    assert r.status == EXIT_DENIED and r.check == "acm", r.message


def test_setlabel_rewrites_other_spellings_as_access_control(host):
    svc, label_lines, cfg = host
    label_lines("ssidref = 196611")
    r = run(svc, ROOT, "setlabel", domain="web-01", label="dom_HomeBanking")
    assert r.ok, r.message
    text = cfg.read_text()
    assert "ssidref" not in text and "access_control" in text
    assert security(svc)["label"] == "dom_HomeBanking"


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        (
            [
                "access_control = ['policy=example.client_v1,label=dom_Fun']",
                "acm_label = ['labelname=dom_HomeBanking,policyname=example.client_v1']",
            ],
            ("cfg:2", "cfg:1", "keep one"),
        ),
        (["access_control = ['policy=P,label=A', 'policy=P,label=B']"], ("more than one",)),
        (
            ["access_control = ['policy=example.client_v1,label=dom_Fun']", "ssidref = 196611"],
            ("cfg:2", "remove the ssidref"),
        ),
        (["ssidref = 'blue'"], ("not a 32-bit number",)),
    ],
)
def test_contradictions_are_refused_naming_the_lines(lines, words):
    cfg = XlConfig("\n".join(lines) + "\n", "/etc/xen/web-01.cfg")
    with pytest.raises(BackendError) as exc:
        label_from_config(cfg)
    for w in words:
        assert w in str(exc.value)


def test_contradictory_labels_fail_the_command_not_read_as_unlabelled(host):
    svc, label_lines, _cfg = host
    label_lines(
        "access_control = ['policy=example.client_v1,label=dom_Fun']",
        "acm_label = ['labelname=dom_HomeBanking,policyname=example.client_v1']",
    )
    r = run(svc, ROOT, "start", domain="web-01")
    assert not r.ok and "keep one of them" in r.message
