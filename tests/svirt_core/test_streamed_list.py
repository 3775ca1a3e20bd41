"""A streamed ``list`` (a remote front-end's, the Xen-API's get_all_records): its rows leave
in parts before the reply, so the client parses while svirtd still builds them; its decision
is on disk before the first part leaves (issue 16; service/queries.py ``_stream_rows``,
docs/audit-format.md "When a record is durable").

Through ``Service.handle`` on a libvirt test-driver node with the real audit log (the env
fixture of test_audit_reads: the log's content at each fdatasync is recorded).  The
conversation is a small stand-in for daemon.websessions' (its ``rows`` is what svirtd sends
as a ``rows`` frame): what it checks at the moment a part would leave is what was durable.
"""

from __future__ import annotations

from secured_virt.requests import EXIT_OK, EXIT_USAGE, Request

from .test_audit_reads import ROOT, env, records  # noqa: F401 - env: the fixture


class Conversation:
    """A front-end's conversation: takes ``rows`` parts; ``gone_after`` parts, it breaks."""

    tty = None

    def __init__(self, synced: list[bytes], gone_after: int | None = None):
        self.synced, self.gone_after = synced, gone_after
        self.parts: list[list] = []
        self.durable_at_first_part: list[dict] | None = None
        self.broken = None

    def ask_password(self, prompt):
        return None

    def progress(self, done, total):
        return None

    def rows(self, rows: list) -> bool:
        if self.durable_at_first_part is None:
            self.durable_at_first_part = records(self.synced[-1]) if self.synced else []
        if self.gone_after is not None and len(self.parts) >= self.gone_after:
            self.broken = BrokenPipeError("the front-end went away")
            return False
        self.parts.append(list(rows))
        return True


def test_the_rows_leave_in_parts_after_the_decision_is_on_disk(env):  # noqa: F811
    svc, log, synced = env
    talk = Conversation(synced)
    r = svc.handle(ROOT, Request("list", {"all": True, "stream": 1}), talk)
    assert r.status == EXIT_OK, r.message
    assert [[row["name"] for row in p] for p in talk.parts] == [["vm-a"], ["vm-b"]]
    assert r.data == {"domains": [], "streamed": 2}
    # when the first part left, the list's decision was durable, and its outcome was not
    (decision,) = [x for x in talk.durable_at_first_part if x.get("op") == "list"]
    assert decision["type"] == "decision" and decision["verdict"] == "allowed"
    assert not any(x.get("type") == "outcome" for x in talk.durable_at_first_part)
    outcome = records(log.read_bytes())[-1]
    assert (outcome["type"], outcome["ref"], outcome["outcome"]) == (
        "outcome",
        decision["seq"],
        "ok",
    )
    # the same rows as the unstreamed list, in the same order
    whole = svc.handle(ROOT, Request("list", {"all": True}), Conversation(synced))

    def same(rows):  # the test driver's CPU time moves between two listings
        return [{k: v for k, v in row.items() if k != "cpu_time_ns"} for row in rows]

    assert same(row for p in talk.parts for row in p) == same(whole.data["domains"])


def test_a_part_smaller_than_the_rest_and_the_rest_in_the_reply(env):  # noqa: F811
    svc, _log, synced = env
    talk = Conversation(synced)
    r = svc.handle(ROOT, Request("list", {"all": True, "stream": 3}), talk)
    assert talk.parts == [] and [d["name"] for d in r.data["domains"]] == ["vm-a", "vm-b"]
    assert r.data["streamed"] == 0


def test_stream_is_ignored_where_no_part_can_leave_and_checked_where_it_can(env):  # noqa: F811
    svc, _log, synced = env
    r = svc.handle(ROOT, Request("list", {"all": True, "stream": 1}))  # svirsh's conversation
    assert r.status == EXIT_OK and "streamed" not in r.data and len(r.data["domains"]) == 2
    for bad in (0, 1001, "5", True, 2.5):
        r = svc.handle(ROOT, Request("list", {"all": True, "stream": bad}), Conversation(synced))
        assert r.status == EXIT_USAGE, (bad, r)
        assert "list: stream must be a number of rows from 1 to 1000" in r.message


def test_a_front_end_that_goes_away_mid_list_is_audited_as_such(env):  # noqa: F811
    svc, log, synced = env
    talk = Conversation(synced, gone_after=1)
    r = svc.handle(ROOT, Request("list", {"all": True, "stream": 1}), talk)
    assert len(talk.parts) == 1 and talk.broken is not None
    assert r.status == EXIT_OK  # the reply nobody reads; the session ends on ``broken``
    outcome = records(log.read_bytes())[-1]
    assert outcome["type"] == "outcome"
    assert outcome["outcome"] == "error:the front-end went away after 1 rows"


def _domain(name: str) -> str:
    return (f"<domain type='test'><name>{name}</name><memory>65536</memory><vcpu>1</vcpu>"
            "<os><type>hvm</type></os></domain>")  # fmt: skip


class Hooked(Conversation):
    """A conversation that runs ``hook`` when the first part leaves."""

    def __init__(self, synced, hook):
        super().__init__(synced)
        self.hook = hook

    def rows(self, rows: list) -> bool:
        if not self.parts:
            self.hook()
        return super().rows(rows)


def _same(rows):  # the test driver's CPU time moves between two listings
    return [{k: v for k, v in row.items() if k != "cpu_time_ns"} for row in rows]


def test_a_streamed_list_decides_on_names_and_asks_each_row_as_it_is_sent(env, monkeypatch):  # noqa: F811
    """The decision waits for the names only: when the first part leaves, one row has been
    asked of libvirt, not all of them (the rows' calls follow while parts are sent)."""
    svc, _log, synced = env
    asked: list[str] = []
    real = svc.backend._info

    def info(dom, **kw):
        asked.append(kw.get("name") or dom.name())
        return real(dom, **kw)

    monkeypatch.setattr(svc.backend, "_info", info)
    at_first_part: list[list[str]] = []
    talk = Hooked(synced, lambda: at_first_part.append(list(asked)))
    r = svc.handle(ROOT, Request("list", {"all": True, "stream": 1}), talk)
    assert r.status == EXIT_OK, r.message
    assert at_first_part == [["vm-a"]]
    assert asked == ["vm-a", "vm-b"]


def test_streamed_rows_are_the_whole_listings_rows(env):  # noqa: F811
    """Transient, autostarted, running and shut-off domains: the rows asked one at a time
    carry what the whole listing's rows carry, in virsh's order."""
    svc, _log, synced = env
    conn = svc.backend.connection
    conn.createXML(_domain("t-run"), 0)  # transient, running
    conn.defineXML(_domain("auto")).setAutostart(1)
    conn.lookupByName("vm-b").destroy()  # the node's domains start running
    args = {"all": True, "managed_save": True, "label": True, "title": True}
    talk = Conversation(synced)
    r = svc.handle(ROOT, Request("list", {**args, "stream": 2}), talk)
    assert r.status == EXIT_OK, r.message
    streamed = [row for p in talk.parts for row in p] + r.data["domains"]
    whole = svc.handle(ROOT, Request("list", args)).data["domains"]
    assert _same(streamed) == _same(whole)
    by_name = {row["name"]: row for row in streamed}
    assert [row["name"] for row in streamed] == ["vm-a", "t-run", "auto", "vm-b"]
    assert by_name["t-run"]["persistent"] is False and by_name["auto"]["autostart"] is True


def test_a_domain_gone_after_the_decision_is_left_out(env):  # noqa: F811
    """A domain destroyed between the decision and its row: left out, as if the listing had
    been made a moment later; the rest is listed and the outcome is ok."""
    svc, log, synced = env
    conn = svc.backend.connection
    conn.createXML(_domain("t-1"), 0)
    gone = conn.createXML(_domain("t-2"), 0)
    talk = Hooked(synced, gone.destroy)
    r = svc.handle(ROOT, Request("list", {"all": True, "stream": 1}), talk)
    assert r.status == EXIT_OK, r.message
    assert [row["name"] for p in talk.parts for row in p] == ["vm-a", "vm-b", "t-1"]
    outcome = records(log.read_bytes())[-1]
    assert (outcome["type"], outcome["outcome"]) == ("outcome", "ok")


def test_a_row_filter_streams_the_rows_of_the_whole_listing(env):  # noqa: F811
    """Filters on a row's state, persistence or autostart need the rows before the decision:
    those lists take the whole listing, and stream the same rows."""
    svc, _log, synced = env
    conn = svc.backend.connection
    conn.lookupByName("vm-b").destroy()
    conn.createXML(_domain("t-run"), 0)
    for flt in ({"state_running": True}, {"transient": True}, {"persistent": True}):
        args = {"all": True, **flt}
        talk = Conversation(synced)
        r = svc.handle(ROOT, Request("list", {**args, "stream": 1}), talk)
        streamed = [row for p in talk.parts for row in p] + r.data["domains"]
        whole = svc.handle(ROOT, Request("list", args)).data["domains"]
        assert _same(streamed) == _same(whole) != [], flt


def test_a_domain_replaced_under_its_name_after_the_decision_is_not_shown(env):  # noqa: F811
    """The decision covered the domain listed under a name; if that domain is undefined and
    another one defined under the same name before its row is asked, the newcomer (which
    nobody decided on) is not shown in its place: rows are asked of the listed handle (its
    UUID), not looked up by name."""
    svc, _log, synced = env
    conn = svc.backend.connection
    old = conn.defineXML(_domain("zz-old"))
    old_uuid = old.UUIDString()

    def replace():
        old.undefine()
        conn.defineXML(_domain("zz-old"))

    talk = Hooked(synced, replace)
    r = svc.handle(ROOT, Request("list", {"all": True, "stream": 1}), talk)
    assert r.status == EXIT_OK, r.message
    rows = [row for p in talk.parts for row in p] + r.data["domains"]
    assert [row["name"] for row in rows] == ["vm-a", "vm-b"]
    assert conn.lookupByName("zz-old").UUIDString() != old_uuid
