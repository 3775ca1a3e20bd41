"""Shared by the regression tests of the mediation table (issue 14 items 5, 6, 8, 11, 16, 18):
a private host around the demo node (test driver) or qemu:///system, sHype/ACM on with the demo
policy demo.hosting (AliceCorp and BobCorp in one Chinese Wall conflict set), and UA/PA that
give alice and bob wide rights on the VMs they own."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import policy
from secured_virt.access.identity import Identity
from secured_virt.config import default_config
from secured_virt.requests import Request
from secured_virt.service import Service

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEMO = REPO / "etc" / "demo"
DEMO_POLICY = DEMO / "acm-policy.xml"

ROOT = Identity(uid=0, gid=0, user="root", groups=(0,), via="direct", pid=os.getpid())

OPS = [
    "list",
    "dominfo",
    "domstate",
    "dumpxml",
    "start",
    "create",
    "define",
    "undefine",
    "destroy",
    "suspend",
    "resume",
    "attach-disk",
    "attach-interface",
    "snapshot-create",
    "snapshot-list",
    "snapshot-revert",
    "console",
]

UA = """<UserConfiguration>
  <User name="alice"><UserRole role="Tenant"/></User>
  <User name="bob"><UserRole role="Tenant"/></User>
</UserConfiguration>"""


def pa_xml(vms=("alice-web", "alice-db", "bob-build", "carol-lab", "shared-dns")) -> str:
    """Role Tenant: every operation in OPS on the listed VMs, and on any VM the caller owns."""
    ops = "".join(f'<operation name="{o}"/>' for o in OPS)
    names = "".join(f'<VM name="{v}"/>' for v in vms)
    return (
        "<RolePolicyDefinition>"
        f'<Role name="Tenant"><ManageVM type="individual">{names}</ManageVM>'
        f"<ControlOperation><Accept>{ops}</Accept></ControlOperation></Role>"
        "</RolePolicyDefinition>"
    )


def roles_pa(roles: dict[str, tuple[str, ...]], ops=OPS) -> str:
    """A PA of one role per entry of ``roles`` (role -> its VMs, by name), each granting
    ``ops`` on its VMs only."""
    accept = "".join(f'<operation name="{o}"/>' for o in ops)
    body = "".join(
        f'<Role name="{role}"><ManageVM type="individual">'
        + "".join(f'<VM name="{v}"/>' for v in vms)
        + f"</ManageVM><ControlOperation><Accept>{accept}</Accept></ControlOperation></Role>"
        for role, vms in roles.items()
    )
    return f"<RolePolicyDefinition>{body}</RolePolicyDefinition>"


def write_root_file(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    os.chown(path, 0, 0)
    return path


def ident(user: str, uid: int = 5001) -> Identity:
    return Identity(uid=uid, gid=uid, user=user, groups=(uid,), via="svirtd", pid=os.getpid())


def host_config(tmp_path: Path, *, uri: str | None = None, pa: str | None = None, **over):
    """A root-owned private configuration; the demo node copied unless ``uri`` is given."""
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    ua_p = write_root_file(etc / "ua.xml", UA)
    pa_p = write_root_file(etc / "pa.xml", pa or pa_xml())
    if uri is None:
        node = etc / "node.xml"
        shutil.copy(DEMO / "node.xml", node)
        uri = f"test://{node}"
    log = tmp_path / "log"
    log.mkdir(mode=0o700, exist_ok=True)
    cfg = dataclasses.replace(
        default_config(),
        uri=uri,
        ua=str(ua_p),
        pa=str(pa_p),
        audit_log=str(log / "audit.log"),
        audit_syslog=False,
        auth_dir=str(tmp_path / "ts"),
        label_store=str(tmp_path / "labels.xml"),
        acm_state_dir=str(tmp_path / "acm"),
        save_dir=str(tmp_path / "save"),
        acm=True,
    )
    return dataclasses.replace(cfg, **over)


def acm_service(cfg, *, stop_running: bool = True, **kw) -> Service:
    """A Service with the demo policy loaded (the demo node's running guests stopped first,
    so every test starts from a known Chinese Wall state)."""
    svc = Service.from_config(cfg, **kw)
    if stop_running:
        for d in svc.backend.list_domains(include_inactive=False):
            svc.backend.destroy(d.name)
    st = svc.acm.host.set_policy(DEMO_POLICY.read_bytes(), policy.XS_INST_LOAD, True)
    assert st.xserr == 0, st.message
    return svc


def run(svc, who, command, **args):
    return svc.handle(who, Request(command, args))


def audit_records(cfg) -> list[dict]:
    with open(cfg.audit_log) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def last_decision(cfg, op: str) -> dict:
    return [r for r in audit_records(cfg) if r.get("op") == op and r["type"] == "decision"][-1]


def label_vm(svc, vm: str, label: str, resource_label: str | None = None) -> None:
    """Root labels ``vm`` and every disk it has (with ``resource_label``, default res_<Corp>)."""
    r = run(svc, ROOT, "setlabel", domain=vm, label=label)
    assert r.ok, r.message
    res = resource_label or label.replace("dom_", "res_").replace("Corp", "Data")
    for key in svc.acm.resources_of(vm):
        if key.startswith("vif-"):
            continue
        r = run(svc, ROOT, "setlabel", domain=key, label=res, resource=True)
        assert r.ok, r.message
