"""svirtd's connection threads are kept for the next connection (daemon.server.Workers).

svirsh opens one connection per command; creating a thread for each (and tearing it down)
cost more under load than many requests themselves.  What must hold: consecutive
connections reuse a thread, simultaneous ones never wait for each other (no queue: a new
thread when none is idle), and threads left idle end after ``keep`` seconds."""

from __future__ import annotations

import threading

from svtd_helpers import wait_for

from secured_virt.daemon.server import Workers


def test_consecutive_connections_reuse_one_thread():
    workers = Workers(keep=30)
    seen, names = [], []
    for i in range(100):
        done = threading.Event()

        def job(i=i, done=done):
            seen.append(threading.get_ident())
            names.append(threading.current_thread().name)
            done.set()

        workers.run(job, f"conn-{i}")
        assert done.wait(10)
        wait_for(lambda: workers.idle() == 1)
    assert len(set(seen)) == 1
    assert names == [f"conn-{i}" for i in range(100)]  # named after the connection it serves


def test_simultaneous_connections_each_get_a_thread_at_once():
    workers = Workers(keep=30)
    release = threading.Event()
    started = []
    for i in range(20):
        workers.run(lambda: (started.append(threading.get_ident()), release.wait(10)), f"c{i}")
    wait_for(lambda: len(started) == 20)  # none waits for another to finish
    assert len(set(started)) == 20
    release.set()
    wait_for(lambda: workers.idle() == 20)


def test_idle_threads_end_after_keep_seconds():
    workers = Workers(keep=0.2)
    before = threading.active_count()
    release = threading.Event()
    for i in range(5):
        workers.run(lambda: release.wait(10), f"c{i}")
    wait_for(lambda: threading.active_count() == before + 5)
    release.set()
    wait_for(lambda: threading.active_count() == before and workers.idle() == 0)


def test_a_job_that_raises_does_not_lose_the_thread():
    workers = Workers(keep=30)
    workers.run(lambda: 1 / 0, "bad")
    wait_for(lambda: workers.idle() == 1)
    ok = threading.Event()
    workers.run(ok.set, "good")
    assert ok.wait(10)
