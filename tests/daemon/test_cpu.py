"""svirtd keeps its threads on one CPU unless told not to (svirtd_one_cpu, daemon.cpu)."""

from __future__ import annotations

import os

import pytest
from svtd_helpers import running_svirtd

from secured_virt import client
from secured_virt.config import Config
from secured_virt.daemon import cpu
from secured_virt.requests import Request

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to choose from"),
]


def _cpus_of_threads(pid: int) -> set[frozenset[int]]:
    """The CPU sets of a process's threads, as the kernel holds them."""
    return {frozenset(os.sched_getaffinity(int(t))) for t in os.listdir(f"/proc/{pid}/task")}


def _serve_one(env) -> None:
    """One request, so that a worker thread exists besides the threads started with svirtd."""
    reply = client.call(env.socket, Request("list", {"all": True}), password_cb=None)
    assert reply.status == 0


def test_svirtd_runs_every_thread_on_one_cpu():
    with running_svirtd() as env:
        _serve_one(env)
        assert len(os.listdir(f"/proc/{env.d.proc.pid}/task")) > 1
        cpu = max(os.sched_getaffinity(0))  # the highest-numbered one it was allowed
        assert _cpus_of_threads(env.d.proc.pid) == {frozenset({cpu})}
        assert f"svirtd's threads run on CPU {cpu}" in env.d.log()
        assert client.admin_status(env.socket).data["daemon"]["cpus"] == [cpu]


def test_svirtd_one_cpu_no_leaves_the_threads_to_the_kernel():
    with running_svirtd(svirtd_one_cpu="no") as env:
        _serve_one(env)
        assert _cpus_of_threads(env.d.proc.pid) == {frozenset(os.sched_getaffinity(0))}
        assert "run on CPU" not in env.d.log()
        cpus = client.admin_status(env.socket).data["daemon"]["cpus"]
        assert cpus == sorted(os.sched_getaffinity(0))


def test_only_the_libvirt_backend_keeps_svirtd_on_one_cpu():
    """With xl, svirtd starts xl, and xl the device models of Xen guests: they would inherit
    svirtd's one CPU."""
    assert cpu.wanted(Config())
    assert not cpu.wanted(Config(svirtd_one_cpu=False))
    assert not cpu.wanted(Config(backend="xl"))
