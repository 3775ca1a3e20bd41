"""daemon.admission: at most ``limit`` requests in the service, the rest in arrival order, and
nobody held up longer than ``slow`` by a request that waits for something else."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from svtd_helpers import wait_for

from secured_virt.daemon.admission import Admission


class Clock:
    """A clock the test moves by hand (the queue's only notion of time besides its waits)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def enter_in_thread(adm: Admission, got: list, name: str) -> threading.Thread:
    """A thread that enters, records ``(name, ticket)`` and stays in until told to leave."""
    leave = threading.Event()

    def run():
        ticket = adm.enter()
        got.append((name, ticket))
        leave.wait(10)
        adm.leave(ticket)

    t = threading.Thread(target=run, daemon=True)
    t.leave = leave  # type: ignore[attr-defined]
    t.start()
    return t


def test_at_most_limit_inside_the_rest_in_arrival_order():
    adm = Admission(2, slow=60)
    got: list = []
    threads = []
    for i in range(6):
        threads.append(enter_in_thread(adm, got, f"r{i}"))
        if i >= 2:  # queued: wait until it is, so that the arrival order is known
            wait_for(lambda i=i: adm.status()["waiting"] == i - 1)
        else:
            wait_for(lambda i=i: len(got) == i + 1)
    assert [n for n, _ in got] == ["r0", "r1"]
    assert adm.status()["running"] == 2 and adm.status()["waiting"] == 4
    for k in range(4):  # each one leaving lets exactly the oldest waiter in
        threads[k].leave.set()
        wait_for(lambda k=k: len(got) == 3 + k)
        time.sleep(0.01)
        assert len(got) == 3 + k, "one leaving let more than one in"
        assert adm.status()["running"] == 2
    assert [n for n, _ in got] == [f"r{i}" for i in range(6)]
    for t in threads:
        t.leave.set()
        t.join(5)
    st = adm.status()
    assert (st["running"], st["waiting"], st["admitted"], st["waited"]) == (0, 0, 6, 4)
    assert st["wait_ms_p50"] >= 0 and st["wait_ms_max"] >= st["wait_ms_p50"]


def test_a_slow_request_stops_counting_after_slow():
    adm = Admission(1, slow=0.15)
    held = adm.enter()  # a request that waits for something else, e.g. a password prompt
    began = time.monotonic()
    second = adm.enter()  # must not wait for `held` to leave
    waited = time.monotonic() - began
    assert 0.1 <= waited < 2.0
    st = adm.status()
    assert st["outlived_slow"] == 1 and st["running"] == 1
    # the slow one leaving later frees nothing: its slot was given away already
    got: list = []
    third = enter_in_thread(adm, got, "third")
    wait_for(lambda: adm.status()["waiting"] == 1)
    adm.leave(held)
    time.sleep(0.05)
    assert got == [] and adm.status()["running"] == 1, "a slot was handed out twice"
    adm.leave(second)
    wait_for(lambda: len(got) == 1)
    third.leave.set()
    third.join(5)
    assert adm.status()["running"] == 0


def test_expiry_is_by_time_in_the_service_oldest_first():
    clock = Clock()
    adm = Admission(2, slow=1.0, clock=clock)
    a = adm.enter()
    clock.now += 0.6
    b = adm.enter()
    clock.now += 0.5  # a has been in 1.1 s, b 0.5 s
    with adm._lock:
        adm._expire_locked(clock())
    assert adm.status()["running"] == 1 and adm.status()["outlived_slow"] == 1
    adm.leave(a)  # no longer counted: nothing changes
    assert adm.status()["running"] == 1
    adm.leave(b)
    assert adm.status()["running"] == 0


def test_no_limit_admits_everyone_at_once():
    adm = Admission(0, slow=0.05)
    tickets = [adm.enter() for _ in range(100)]
    assert tickets == [None] * 100
    for t in tickets:
        adm.leave(t)
    assert adm.status()["running"] == 0 and adm.status()["waiting"] == 0


def test_as_a_context_manager_per_thread():
    adm = Admission(1, slow=60)
    order: list[str] = []

    def run(name):
        with adm:
            order.append(f"{name} in")
            time.sleep(0.02)
            order.append(f"{name} out")

    ts = [threading.Thread(target=run, args=(f"t{i}",)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(5)
    # never two inside at once: every "in" is followed by its own "out"
    assert all(order[i].split()[0] == order[i + 1].split()[0] for i in range(0, 8, 2))
    assert adm.status()["running"] == 0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        Admission(-1, slow=1)
    with pytest.raises(ValueError):
        Admission(1, slow=0)


def test_the_configuration_keys_reach_svirtd():
    from secured_virt.config import parse_config
    from secured_virt.daemon.server import Limits, Server

    cfg = parse_config(
        "[secured-virt]\nsvirtd_active_requests = 3\nsvirtd_slow_request_ms = 2s\n", "t.conf"
    )
    limits = Limits.from_config(cfg)
    assert (limits.svirtd_active_requests, limits.svirtd_slow_request_ms) == (3, 2000.0)
    server = Server(object(), socket.socket(socket.AF_UNIX), limits=limits)
    try:
        st = server.status()["daemon"]["admission"]
        assert (st["limit"], st["slow_ms"], st["running"], st["waiting"]) == (3, 2000.0, 0, 0)
    finally:
        server.sock.close()
        server._wake_r.close()
        server._wake_w.close()


@pytest.mark.parametrize(
    "line, says",
    [
        ("svirtd_active_requests = -1", "expected a whole number"),
        ("svirtd_active_requests = 5000", "outside the allowed range 0..4096"),
        ("svirtd_slow_request_ms = 0", "outside the allowed range"),
        ("svirtd_slow_request_ms = soon", "expected a duration"),
    ],
)
def test_bad_values_name_the_file_and_line(line, says):
    from secured_virt.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as exc:
        parse_config(f"[secured-virt]\n{line}\n", "host.conf")
    assert "host.conf:2" in str(exc.value) and says in str(exc.value)


def test_a_request_waiting_for_shared_work_lets_another_in():
    """A request waiting for a group commit's batch or a shared listing (secured_virt.waiting)
    uses no CPU: it stops counting, so the next request runs and can join that batch; when
    the wait is over it counts again, even above the limit, and newcomers wait for that."""
    from secured_virt import waiting

    adm = Admission(1, slow=60)
    in_batch, batch_done, a_done = threading.Event(), threading.Event(), threading.Event()

    def a():
        with adm:
            with waiting.for_others():
                in_batch.set()
                batch_done.wait(10)
            a_done.wait(10)

    ta = threading.Thread(target=a)
    ta.start()
    assert in_batch.wait(5)
    assert adm.status()["running"] == 0  # a waits for others' work: not counted
    got: list = []
    tb = enter_in_thread(adm, got, "b")  # let in at once though the limit is 1
    wait_for(lambda: len(got) == 1)
    batch_done.set()
    wait_for(lambda: adm.status()["running"] == 2)  # a counts again, above the limit
    tc = enter_in_thread(adm, got, "c")
    wait_for(lambda: adm.status()["waiting"] == 1)
    tb.leave.set()
    time.sleep(0.05)
    assert [n for n, _ in got] == ["b"], "c was let in while two were running, limit 1"
    a_done.set()
    wait_for(lambda: len(got) == 2)
    tc.leave.set()
    for t in (ta, tb, tc):
        t.join(5)
    assert adm.status()["running"] == 0 and adm.status()["waiting"] == 0


def test_waiting_for_others_without_a_keeper_does_nothing():
    from secured_virt import waiting

    with waiting.for_others():  # not in a request of svirtd's: nobody to tell
        pass
    adm = Admission(0, slow=1)
    with adm, waiting.for_others():  # no limit: no keeper is set
        assert adm.status()["running"] == 0


@pytest.mark.integration
def test_a_real_svirtd_queues_a_burst_and_answers_every_request():
    """svirtd with two requests let in at a time, 24 clients at once (lists, dominfo, a
    refused suspend as a user without roles): every reply is right, some had to wait, the
    audit holds every decision, and the queue is empty afterwards."""
    from svtd_helpers import running_svirtd

    from secured_virt import client
    from secured_virt.requests import Request

    with running_svirtd(svirtd_active_requests=2) as env:
        names = {
            d["name"]
            for d in client.call(env.socket, Request("list", {"all": True})).data["domains"]
        }
        replies: list = []
        go = threading.Event()

        def one(i):
            go.wait(10)
            req = (
                Request("list", {"all": True})
                if i % 2
                else Request("dominfo", {"domain": "alice-web"})
            )
            replies.append((req.command, client.call(env.socket, req)))

        ts = [threading.Thread(target=one, args=(i,)) for i in range(24)]
        for t in ts:
            t.start()
        go.set()
        for t in ts:
            t.join(60)
        assert len(replies) == 24
        for cmd, r in replies:
            assert r.status == 0, (cmd, r.message)
            if cmd == "list":
                assert {d["name"] for d in r.data["domains"]} == names
            else:
                assert r.data["name"] == "alice-web"
        st = client.admin_status(env.socket).data["daemon"]["admission"]
        assert st["limit"] == 2 and st["admitted"] == 25 and st["waited"] >= 1
        assert st["running"] == 0 and st["waiting"] == 0
        decided = [r for r in env.audit_records() if r["type"] == "decision"]
        assert len(decided) == 25


def test_callers_take_turns_so_a_flood_delays_others_by_one_request():
    """Attack: one tenant (uid 2001) queues ten requests to slow everyone down; another
    (uid 2002) then asks once.  Strictly first come, first served, it would wait for all ten;
    with callers taking turns it is let in after at most one of the flooder's."""
    adm = Admission(1, slow=60)
    holder = adm.enter(who=2001)  # the flooder's first request runs
    got: list = []
    lock = threading.Lock()

    def one(who, name, release):
        ticket = adm.enter(who=who)
        with lock:
            got.append(name)
        release.wait(10)
        adm.leave(ticket)

    releases = {}
    ts = []
    for i in range(10):
        releases[f"flood{i}"] = threading.Event()
        ts.append(threading.Thread(target=one, args=(2001, f"flood{i}", releases[f"flood{i}"])))
        ts[-1].start()
        wait_for(lambda i=i: adm.status()["waiting"] == i + 1)
    releases["victim"] = threading.Event()
    ts.append(threading.Thread(target=one, args=(2002, "victim", releases["victim"])))
    ts[-1].start()
    wait_for(lambda: adm.status()["waiting"] == 11)
    assert adm.status()["callers_waiting"] == 2
    adm.leave(holder)
    for n in range(1, 12):  # let each one in run and leave, one after the other
        wait_for(lambda n=n: len(got) == n)
        releases[got[-1]].set()
    for t in ts:
        t.join(5)
    assert got.index("victim") <= 1, got
    assert [g for g in got if g != "victim"] == [f"flood{i}" for i in range(10)]
    st = adm.status()
    assert (st["running"], st["waiting"], st["callers_waiting"]) == (0, 0, 0)


def test_turns_alternate_between_callers_with_many_waiting():
    adm = Admission(1, slow=60)
    holder = adm.enter(who="a")
    order: list = []
    ts = []

    def one(who, tag, ev):
        t = adm.enter(who=who)
        order.append(tag)
        ev.wait(10)
        adm.leave(t)

    tags = ["a0", "a1", "a2", "b0", "b1", "b2", "c0"]  # queued in this order
    release = {tag: threading.Event() for tag in tags}
    for n, tag in enumerate(tags, 1):
        ts.append(threading.Thread(target=one, args=(tag[0], tag, release[tag])))
        ts[-1].start()
        wait_for(lambda n=n: adm.status()["waiting"] == n)
    adm.leave(holder)
    for n in range(1, len(tags) + 1):  # each one let in runs, then leaves
        wait_for(lambda n=n: len(order) == n)
        release[order[-1]].set()
    for t in ts:
        t.join(5)
    # the callers in the order they first waited, each one request per turn; "c" is done
    # after one, and "a" and "b" go on alternating
    assert order == ["a0", "b0", "c0", "a1", "b1", "a2", "b2"]
