"""Mocked Xen hosts for the seed tests: one fake ``xl`` per host (there is no Xen here), each
with its own xl path, /etc/xen copy and running set, dispatched on the xl path a backend runs.
Built on tests/backends/xlfake.py, which answers from recorded xl output."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import policy
from secured_virt.backends.xl_backend import XlBackend
from secured_virt.backends.xl_parse import read_save_header

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends"))
from xlfake import XL_DATA, FakeXl, data

from .conftest import acm_service

#: the seeds' example policy every xl host here starts from
CLIENT = policy.examples()["example.client_v1"]


def renumbered_client() -> bytes:
    """example.client_v1 with one more VM label sorting first: every label's number moves."""
    return CLIENT.read_bytes().replace(
        b"<VirtualMachineLabel>",
        b"<VirtualMachineLabel><Name>dom_Aardvark</Name><SimpleTypeEnforcementTypes>"
        b"<Type>ste_DonatedCycles</Type></SimpleTypeEnforcementTypes>"
        b"<ChineseWallTypes><Type>cw_Isolated</Type></ChineseWallTypes></VirtualMachineLabel>"
        b"<VirtualMachineLabel>",
        1,
    )


class HostXl(FakeXl):
    """One host's xl: only ``self.running`` is listed; save writes the recorded image of
    web-01 and stops the domain; restore starts the domain the image names; destroy stops."""

    def __init__(self, xl_path: str, running: dict[str, int]) -> None:
        super().__init__()
        self.xl_path = xl_path
        self.running = dict(running)

    def __call__(self, argv, **kw):
        key = tuple(argv[1:])

        def done(out=""):
            self.calls.append((list(argv), kw))
            return subprocess.CompletedProcess(argv, 0, out, "")

        if key[:2] == ("save", "--"):
            shutil.copy(XL_DATA / "web-01.save", key[3])
            os.chmod(key[3], 0o600)
            self.running.pop(key[2])
            return done()
        if key[:2] == ("restore", "--"):
            cfg = read_save_header(key[2]).config
            self.running[cfg["c_info"]["name"]] = 11
            return done()
        if key[:2] == ("destroy", "--"):
            self.running.pop(key[2])
            return done()
        if key == ("list",):
            lines = data("list.txt").splitlines(keepends=True)
            keep = [ln for ln in lines[1:] if ln.split()[0] in self.running]
            return done("".join(lines[:1] + keep))
        if key == ("list", "-l"):
            ids = set(self.running.values())
            return done(
                json.dumps([e for e in json.loads(data("list-l.json")) if e["domid"] in ids])
            )
        return super().__call__(argv, **kw)


def make_hosts(mocker, tmp_path):
    """``make(name, running, configs)``: one more host's XlBackend on its own fake xl
    (``make.fakes[xl_path]``), with the listed configs copied from the recorded /etc/xen."""
    by_path: dict[str, HostXl] = {}

    def dispatch(argv, **kw):
        return by_path[argv[0]](argv, **kw)

    mocker.patch("secured_virt.backends.xl_run.subprocess.run", side_effect=dispatch)

    def make(name: str, running: dict[str, int], configs=("web-01",)) -> XlBackend:
        etc = tmp_path / name / "etc-xen"
        etc.mkdir(parents=True)
        os.chmod(etc, 0o755)
        for c in configs:
            shutil.copy(XL_DATA / "etc-xen" / f"{c}.cfg", etc / f"{c}.cfg")
            os.chmod(etc / f"{c}.cfg", 0o644)
        path = f"/opt/{name}/sbin/xl"
        by_path[path] = HostXl(path, running)
        return XlBackend(
            xl_path=path, xl_config_dir=str(etc), xl_transient_dir=str(tmp_path / name / "run")
        )

    make.fakes = by_path
    return make


def xl_host(cfg, state_dir, policy_xml: bytes, backend):
    return acm_service(dataclasses.replace(cfg, backend="xl"), state_dir, policy_xml, backend)
