"""The web console's VM page for a user who sees 1,000 VMs: target <= 100 ms server-side.

What "server-side" is here, each a median in this one process, then their sum:

* ``service``: ``Service.handle(vm-actions)`` as svirtd runs it for the page (libvirt's test
  driver, a 1,000-domain node, a role granting all of them by name with the page's eight
  operations): list + the per-VM "may" answers + one audit record;
* ``hop``: the reply through JSON both ways (what svirtd's frame and the web's link cost;
  the Unix-socket round trip itself is not counted);
* ``render``: ``web.pages.vms_page`` making the HTML (escaped, one form per row).

Run: ``$PY bench/bench_web.py`` (as root: the role files must be root-owned).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from inprocess import median_ms, test_driver_config, write

N = 1000
REPEAT = 11
TARGET_MS = 100.0


def main() -> int:
    from secured_virt.access.identity import Identity
    from secured_virt.requests import Request
    from secured_virt.service import Service
    from secured_virt.web import app, pages

    tmp = Path(tempfile.mkdtemp(prefix="bench-web."))
    names = [f"vm{i:04d}" for i in range(N)]
    ops = ["list", "dominfo", "start", "shutdown", "reboot", "destroy", "suspend", "resume",
           "getlabel", "console"]  # fmt: skip
    ua = write(tmp / "ua.xml", "<UserConfiguration><User name='alice'><UserRole role='T'/>"
               "</User></UserConfiguration>")  # fmt: skip
    pa = write(
        tmp / "pa.xml",
        "<RolePolicyDefinition><Role name='T'><ManageVM type='individual'>"
        + "".join(f"<VM name='{n}'/>" for n in names)
        + "</ManageVM><ControlOperation><Accept>"
        + "".join(f"<operation name='{o}'/>" for o in ops)
        + "</Accept></ControlOperation></Role></RolePolicyDefinition>",
    )
    svc = Service.from_config(test_driver_config(tmp, names, ua, pa))
    alice = Identity(uid=5001, gid=5001, user="alice", groups=(5001,), via="web", pid=1)
    req = Request("vm-actions", {"ops": app.VM_OPS, "host_ops": app.HOST_OPS})
    reply = svc.handle(alice, req)
    assert reply.status == 0 and len(reply.data["domains"]) == N, reply.message
    assert set(reply.data["domains"][0]["may"]) >= {"start", "destroy", "console"}
    s_ms = median_ms(lambda: svc.handle(alice, req), REPEAT)
    wire = json.dumps(reply.to_dict()).encode()
    h_ms = median_ms(lambda: json.loads(json.dumps(reply.to_dict()).encode()), REPEAT)
    doms_ = reply.data["domains"]
    html = pages.vms_page("alice", "c" * 40, doms_, ())
    assert html.count("<tr data-vm=") == N
    r_ms = median_ms(lambda: pages.vms_page("alice", "c" * 40, doms_, ()), REPEAT)
    total = s_ms + h_ms + r_ms
    print("| what (1,000 visible VMs, 8 buttons each) | median |\n|---|---|")
    print(f"| service: vm-actions (list + may + audit) | {s_ms:.1f} ms |")
    print(f"| hop: JSON both ways ({len(wire) // 1024} KiB) | {h_ms:.1f} ms |")
    print(f"| render: HTML ({len(html) // 1024} KiB) | {r_ms:.1f} ms |")
    print(f"| **server-side total** (target <= {TARGET_MS:.0f} ms) | **{total:.1f} ms** |")
    return 0 if total <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
