"""docs/xsm-api.md maps every seed-000 call to a command, a request and a Python method; this
checks each row against the code: the methods exist on XsmHost/XsmPolicy/CompiledPolicy, the
requests have a Service handler, svirsh commands are in the command table and svirt-admin
policy actions in its parser, and every seed-000 call is in the table."""

from __future__ import annotations

import re
from pathlib import Path

from policy.compiled import CompiledPolicy
from policy.mediator import Mediator
from policy.xsm.editor import XsmPolicy
from policy.xsm.host import XsmHost
from secured_virt.cli import commands
from secured_virt.cli.admin_policy_edit import EDIT_ACTIONS
from secured_virt.service import Service

DOC = Path(__file__).resolve().parents[2] / "docs" / "xsm-api.md"
SEED_000 = [
    "host.getXSMType", "host.setXSMPolicy", "host.getXSMPolicy", "host.rmXSMBootPolicy",
    "setsHypeHeader", "getsHypeHeader", "addType", "rmType", "getTypes", "addConflictSet",
    "rmConflictSet", "getConflictSets", "addLabel", "rmLabel", "getLabels", "getXML", "getMap",
    "getBinary", "VM.getlabel", "VM.setlabel", "VM.relabel", "VBD.getlabel", "VBD.setlabel",
    "VBD.relabel", "VIF.getlabel", "VIF.setlabel", "VIF.relabel",
]  # fmt: skip
CLASSES = {"XsmHost": XsmHost, "XsmPolicy": XsmPolicy, "CompiledPolicy": CompiledPolicy}


def rows() -> list[list[str]]:
    out = []
    for line in DOC.read_text().splitlines():
        if line.startswith("| ") and not line.startswith("| seed") and "---" not in line:
            out.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return out


def test_every_seed_000_call_has_a_row():
    text = DOC.read_text()
    for call in SEED_000:
        assert f"`{call}" in text or f"`{call.split('.')[-1]}" in text, call


def test_every_named_python_method_exists():
    named = re.findall(r"`(XsmHost|XsmPolicy|CompiledPolicy)\.([a-z_.]+)\(", DOC.read_text())
    assert len(named) > 30
    for cls, attr in named:
        obj = CLASSES[cls]
        for part in attr.split("."):
            if part == "mediator":  # set on instances: its class has the methods named
                obj = Mediator
                continue
            assert hasattr(obj, part), f"{cls}.{attr}"
            obj = getattr(obj, part)


def test_every_request_has_a_service_handler():
    requests = set()
    for row in rows():
        for cell in row[2:3]:
            requests |= set(re.findall(r"`([a-z][a-z-]+)`", cell.split("(")[0]))
    assert {"policy-edit", "getlabel", "setlabel", "rmlabel", "policy-show"} <= requests
    for req in requests:
        assert hasattr(Service, "_cmd_" + req.replace("-", "_")), req


def test_every_command_exists():
    svirsh = set(commands.COMMANDS)
    admin_actions = set(EDIT_ACTIONS) | {
        "show", "map", "binary", "types", "conflicts", "labels", "load", "update", "reset",
        "rm-boot",
    }  # fmt: skip
    for row in rows():
        for cmd in re.findall(r"`(svirsh|svirt-admin policy) ([a-z-]+)", row[1]):
            if cmd[0] == "svirsh":
                assert cmd[1] in svirsh, cmd
            else:
                assert cmd[1] in admin_actions, cmd
