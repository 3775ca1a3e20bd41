"""``VM.get_all_records`` streamed (issue 16): past ``STREAM_ROWS`` VMs the answer goes out in
parts while svirtd still builds the rows, and says the same as a record per VM.

The whole stack: svirtd as root on a test-driver node of 250 VMs the caller may all see,
svirt-xenapi as its own uid, the PyPI ``XenAPI`` client and plain HTTPS over the pinned
certificate.  Streaming shows on the wire (a chunked body) and in the audit log (the list's
decision, then its outcome); it changes no record, and a refusal is still a whole answer.
"""

from __future__ import annotations

import http.client
import time
import uuid
import xmlrpc.client

import pytest
from svtd_helpers import write_root_file

from secured_virt.xenapi.api import STREAM_ROWS

from .conftest import UA, XenEnv

pytestmark = pytest.mark.integration

N = 250
ROLE = """  <Role name="ManyTeam">
    <ManageVM type="pattern"><VM pattern="many-*"/></ManageVM>
    <ControlOperation><Accept><operation name="list"/><operation name="dominfo"/>
    </Accept></ControlOperation>
  </Role>
</RolePolicyDefinition>"""


@pytest.fixture
def many(readable_src, tmp_path):
    tmp_path.chmod(0o755)
    node = tmp_path / "node.xml"
    doms = "".join(
        f'<domain type="test"><name>many-{i:03d}</name>'
        f"<uuid>{uuid.uuid5(uuid.NAMESPACE_DNS, f'many-{i}')}</uuid>"
        '<metadata><svirt:vm xmlns:svirt="https://secured-virt.org/xmlns/svirt/1">'
        "<svirt:owner>svt-alice</svirt:owner></svirt:vm></metadata>"
        '<memory unit="MiB">64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>\n'
        for i in range(N)
    )
    node.write_text(f"<node>\n{doms}</node>\n")
    node.chmod(0o644)
    env = XenEnv(readable_src, uri=f"test://{node}")
    try:
        ua = UA.replace('<UserRole role="WebTeam"/>', '<UserRole role="ManyTeam"/>')
        write_root_file(env.env.ua, ua)
        pa = env.env.pa.read_text().replace("</RolePolicyDefinition>", ROLE)
        write_root_file(env.env.pa, pa)
        deadline = time.monotonic() + 20
        while True:  # svirtd's watcher reloads UA/PA within a second or two
            s = env.login("svt-alice")
            if len(s.xenapi.VM.get_all()) == N or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        yield env, s
    finally:
        env.stop()


def raw(env, body: bytes) -> http.client.HTTPResponse:
    conn = http.client.HTTPSConnection("127.0.0.1", env.port, context=env.context())
    conn.request("POST", "/", body, {"Content-Type": "text/xml"})
    return conn.getresponse()


def test_many_records_stream_and_say_what_each_record_says(many):
    env, s = many
    assert N > 2 * STREAM_ROWS  # several parts, and a rest in the reply
    before = len(env.audit())
    recs = s.xenapi.VM.get_all_records()
    assert sorted(r["name_label"] for r in recs.values()) == [f"many-{i:03d}" for i in range(N)]
    for ref in sorted(recs)[:: N // 5]:
        assert recs[ref] == s.xenapi.VM.get_record(ref)
    # on the wire: a chunked body, read back whole by any XML-RPC parser
    resp = raw(env, xmlrpc.client.dumps((s.handle,), "VM.get_all_records").encode())
    assert resp.getheader("Transfer-Encoding") == "chunked"
    answer = xmlrpc.client.loads(resp.read())[0][0]
    assert answer["Status"] == "Success" and len(answer["Value"]) == N
    # in the audit: the list's decision alone, then its outcome (the rows left in between)
    recs_after = env.audit()[before:]
    decision = next(r for r in recs_after if r.get("op") == "list" and r.get("via") == "xenapi")
    outcome = next(r for r in recs_after if r.get("ref") == decision["seq"])
    assert decision["type"] == "decision" and decision["verdict"] == "allowed"
    assert (outcome["type"], outcome["outcome"]) == ("outcome", "ok")
    assert f"{N} of {N} domains visible" in decision["rule"]


def test_a_refused_call_is_a_whole_answer_not_a_stream(many):
    env, _session = many
    resp = raw(env, xmlrpc.client.dumps(("not-a-session",), "VM.get_all_records").encode())
    assert resp.getheader("Transfer-Encoding") is None
    answer = xmlrpc.client.loads(resp.read())[0][0]
    assert answer["Status"] == "Failure"
    assert answer["ErrorDescription"][0] == "SESSION_INVALID"
