"""The catalogue's monitoring and maintenance commands on Xen: the argv lists the xl backend
runs (against a mocked xl, as the other xl tests: there is no Xen here), the service path on
top of it, and a clear ``unsupported`` where xl has no such thing."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from secured_virt.backends.base import BackendError
from secured_virt.backends.xl_backend import XlBackend
from secured_virt.requests import EXIT_FAILED, Request
from secured_virt.service import Service

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends"))
from xlfake import XL, XL_DATA, FakeXl

from .conftest import ROOT

VCPU_LIST = """\
Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)
web-01                               3     0    1   -b-      12.3  0-1 / all
web-01                               3     1    3   -b-       4.0  all / all
"""


@pytest.fixture
def fake(mocker):
    fake = FakeXl()
    mocker.patch("secured_virt.backends.xl_run.subprocess.run", side_effect=fake)
    yield fake
    for argv, kw in fake.calls:  # every call: the xl binary, no shell, scrubbed env
        assert argv[0] == XL and kw.get("shell", False) is False
        assert kw["stdin"] is subprocess.DEVNULL


@pytest.fixture
def xl(fake, tmp_path):
    etc = tmp_path / "etc-xen"
    shutil.copytree(XL_DATA / "etc-xen", etc)
    os.chmod(etc, 0o755)
    for f in etc.iterdir():
        os.chmod(f, 0o644)
    (etc / "auto").mkdir(mode=0o755)
    return XlBackend(xl_path=XL, xl_config_dir=str(etc), xl_transient_dir=str(tmp_path / "run"))


def test_nmi_dump_and_pinning_argv(xl, fake, tmp_path):
    fake.on("trigger", "--", "web-01", "nmi")
    xl.inject_nmi("web-01")
    core = str(tmp_path / "web.core")
    fake.on("dump-core", "--", "web-01", core)
    xl.dump("web-01", core)
    fake.on("vcpu-pin", "--", "web-01", "1", "0,2,3")
    xl.vcpupin("web-01", 1, (3, 0, 2), live=True, config=False)
    fake.on("vcpu-list", "--", "web-01", out=VCPU_LIST)
    assert xl.vcpu_pin_info("web-01") == [(0, (0, 1)), (1, ())]
    assert ["trigger", "--", "web-01", "nmi"] in fake.argvs
    assert ["dump-core", "--", "web-01", core] in fake.argvs
    assert ["vcpu-pin", "--", "web-01", "1", "0,2,3"] in fake.argvs


def test_names_and_paths_are_checked_before_xl(xl, fake):
    with pytest.raises(BackendError):
        xl.inject_nmi("-x")
    with pytest.raises(BackendError):
        xl.dump("web-01", "relative.core")
    assert fake.calls == []


@pytest.mark.parametrize(
    ("call", "word"),
    [
        (lambda b: b.domblkstat("web-01", "xvda"), "block statistics"),
        (lambda b: b.domifstat("web-01", "vif3.0"), "interface statistics"),
        (lambda b: b.managed_save("web-01"), "managed save"),
        (lambda b: b.send_key("web-01", [1], codeset="linux", holdtime=0), "send-key"),
        (lambda b: b.screenshot("web-01"), "screenshots"),
        (lambda b: b.set_description("web-01", "x"), "description"),
    ],
)
def test_what_xl_lacks_is_said(xl, fake, call, word):
    with pytest.raises(BackendError) as exc:
        call(xl)
    assert exc.value.code == "unsupported" and word in str(exc.value)
    assert fake.calls == []


def test_through_the_service_on_xl(xl, fake, svt_env):
    svc = Service.from_config(dataclasses.replace(svt_env, backend="xl"), backend=xl)
    fake.on("trigger", "--", "web-01", "nmi")
    r = svc.handle(ROOT, Request("inject-nmi", {"domain": "web-01"}))
    assert r.ok, r.message
    disks = svc.handle(ROOT, Request("domblklist", {"domain": "web-01"})).data["disks"]
    assert disks and all(d["target"] for d in disks)
    assert svc.handle(ROOT, Request("nodeinfo", {})).data["hypervisor"] == "Xen"
    mem = svc.handle(ROOT, Request("dommemstat", {"domain": "web-01"})).data["stats"]
    assert mem["actual"] > 0
    r = svc.handle(ROOT, Request("managedsave", {"domain": "web-01"}))
    assert r.status == EXIT_FAILED and "xl has no managed save" in r.message
