"""svirtd keeps all its threads on one CPU (configuration key ``svirtd_one_cpu``, default yes).

Why: svirtd is one Python process, and only the thread holding the interpreter lock (the GIL)
runs Python, so it never uses more than one core's worth of Python anyway.  What it does use
a second core for is waking its own threads: every call that lets go of the GIL (a libvirt
call, a recv or send, a file read, an fdatasync) with another thread waiting for it wakes that
thread on the other core, and the caller, back a microsecond later, has to sleep until the GIL
comes back.  Under 50 concurrent clients that ping-pong was more than half of svirtd's CPU
(futex calls, context switches; bench/bench_daemon.py: 1.09 ms of CPU per request spread over
two cores, 0.51 ms on one, and 1,900 instead of 1,100 requests/s).  On one CPU the thread
that let go of the GIL usually takes it back before the woken one gets to run, and the
woken one runs when the other really waits (for a client, the disk, libvirtd).

The CPU is the highest-numbered one svirtd may use (its affinity as started, e.g. a unit's
``CPUAffinity=``): the kernel steers more interrupts and housekeeping to CPU 0.  Whatever the
threads wait for (libvirtd, QEMU, the disk, the clients) still runs on every CPU.

Only with the libvirt backend: a process svirtd starts inherits its CPU, and with ``backend =
xl`` svirtd starts ``xl``, which starts the device models (QEMU) of Xen guests; they must not
all end up on svirtd's one CPU.  (With libvirt, libvirtd starts QEMU, and what svirtd itself
starts - useradd for a realm - is short-lived.)
"""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger("svirtd")


def wanted(config) -> bool:
    """Whether svirtd keeps its threads on one CPU with this configuration (see above)."""
    return bool(config.svirtd_one_cpu) and config.backend == "libvirt"


def allowed() -> list[int]:
    """The CPUs svirtd's threads may run on (one with svirtd_one_cpu = yes), for its status."""
    try:
        return sorted(os.sched_getaffinity(0))
    except OSError:
        return []


def run_on_one_cpu() -> int | None:
    """Restrict this process's threads (those running now and, by inheritance, every later
    one) to one CPU of those allowed; the CPU, or None when it could not be done (logged: a
    matter of speed, never a reason not to serve)."""
    try:
        allowed = os.sched_getaffinity(0)
    except OSError as exc:
        log.warning("cannot read svirtd's CPU affinity (%s); its threads may use any CPU", exc)
        return None
    cpu = max(allowed)
    if allowed == {cpu}:
        return cpu
    try:
        tasks = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tasks = [0]
    try:
        for tid in tasks:
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                os.sched_setaffinity(tid, {cpu})
    except OSError as exc:
        log.warning("cannot keep svirtd on CPU %d (%s); its threads may use any CPU", cpu, exc)
        return None
    return cpu
