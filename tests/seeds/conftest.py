"""Fixtures for the seed 000/001 tests: the front-end's private configuration (reused from
tests/frontend) and a Service with sHype/ACM on, running etc/demo's policy."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from secured_virt.requests import Request
from secured_virt.service import Service
from tests.frontend.conftest import ROOT, ident, svt_env  # noqa: F401 - fixtures reused

REPO = Path(__file__).resolve().parents[2]
DEMO_POLICY = REPO / "etc" / "demo" / "acm-policy.xml"
IMG = "/var/lib/libvirt/images/{}.qcow2"


def run(svc, who, command, **args):
    return svc.handle(who, Request(command, args))


def acm_service(cfg, state_dir, policy_xml: bytes | None = None, backend=None) -> Service:
    """A host with sHype/ACM on (demo.hosting loaded through root's own request)."""
    svc = Service.from_config(
        dataclasses.replace(cfg, acm=True, acm_state_dir=str(state_dir)), backend=backend
    )
    if policy_xml is not None:
        r = run(svc, ROOT, "policy-load", xml=policy_xml.decode(), overwrite=True)
        assert r.ok, r.message
    return svc


@pytest.fixture
def demo(svt_env, tmp_path):  # noqa: F811 - the reused fixture
    return acm_service(svt_env, tmp_path / "acm", DEMO_POLICY.read_bytes())


__all__ = ["IMG", "ROOT", "acm_service", "ident", "run"]
