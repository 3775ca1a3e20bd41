"""svirtd: accept loop, limits, counters, hot reload, hypervisor reconnection, clean shutdown.

Concurrency model: one thread per connection, every socket operation under a deadline (idle
timeout for reading a frame, write timeout for sending one), so a slow or hostile client only
ever occupies its own thread, and connection caps (total and per uid) bound how many threads a
single user can hold.  The threads are kept for the next connection (``Workers``) instead of
being created and torn down for each: svirsh opens one connection per command, and under load
starting a thread per accept (clone, a new stack, the handshake with the accept loop) cost more
than many requests themselves.  The hypervisor connection is shared through the Service;
libvirt-python releases the GIL during calls, so threads overlap where it matters.  All the
threads run on one CPU (``svirtd_one_cpu``, daemon.cpu): waking each other across two CPUs at
every GIL hand-off cost more than the second CPU gave.

The main thread only accepts connections and reacts to signals (through a wake-up pipe):
SIGHUP reloads the policy, SIGTERM/SIGINT stop the daemon - stop accepting, end idle
connections, let in-flight requests finish within ``shutdown_timeout``, then close the
service so the audit log is flushed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import logging.handlers
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from secured_virt.requests import (
    EXIT_BAD_POLICY,
    EXIT_DENIED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Reply,
)

from . import cpu as cpus
from . import heap, listener
from . import protocol as P
from .admission import Admission
from .reconfig import Reconfigurer
from .session import Session
from .watcher import PolicyWatcher
from .websessions import WebSessions

log = logging.getLogger("svirtd")

VERSION = "0.1.0"
STATUS_NAMES = {
    EXIT_OK: "ok",
    EXIT_FAILED: "failed",
    EXIT_USAGE: "usage",
    EXIT_DENIED: "denied",
    EXIT_BAD_POLICY: "bad_policy",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection and global limits; the first two come from the configuration file."""

    request_max_bytes: int = 1 << 20
    idle_timeout: float = 30.0
    write_timeout: float = 30.0
    password_timeout: float = 120.0
    max_connections: int = 1024
    max_connections_per_uid: int = 128
    shutdown_timeout: float = 10.0
    #: requests in the service at once, the rest queued in arrival order (0: no limit), and
    #: the time after which a request stops counting against it (daemon.admission says why)
    svirtd_active_requests: int = 16
    svirtd_slow_request_ms: float = 50.0

    @classmethod
    def from_config(cls, config) -> Limits:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: getattr(config, k) for k in fields if hasattr(config, k)})


class Counters:
    """Monotonic counters for the status request; cheap and thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._c: dict[str, int] = defaultdict(int)
        self._latency_total = 0.0

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._c[key] += n

    def reply(self, status: int, seconds: float) -> None:
        with self._lock:
            self._c["requests"] += 1
            self._c["replies_" + STATUS_NAMES.get(status, "other")] += 1
            self._latency_total += seconds

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(sorted(self._c.items()))
            n = out.get("requests", 0)
            out["mean_request_ms"] = round(self._latency_total * 1000 / n, 3) if n else None
            return out


class Workers:
    """Threads that serve one connection at a time and then wait for the next one.

    ``run(fn, name)`` hands ``fn`` to an idle thread (woken through its own lock, so exactly
    one thread wakes up) or starts a new one when none is idle; there is no queue, so a
    connection never waits behind another one, and how many threads exist is bounded by the
    connection caps the server checks before calling.  A thread idle for ``keep`` seconds
    ends, so a burst of connections does not leave its threads behind forever."""

    def __init__(self, prefix: str = "svirtd", keep: float = 60.0):
        self.prefix = prefix
        self.keep = keep
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._count = 0

    def run(self, fn: Callable[[], Any], name: str) -> None:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
            if worker is None:
                self._count += 1
                serial = self._count
        if worker is not None:
            worker.give(fn, name)
            return
        worker = _Worker(self)
        worker.job = (fn, name)
        t = threading.Thread(target=worker.loop, name=f"{self.prefix}-worker-{serial}", daemon=True)
        t.start()

    def _rest(self, worker: _Worker) -> bool:
        """Called by a worker after its job: wait for the next one; False ends the thread."""
        with self._lock:
            self._idle.append(worker)
        if worker.wake.acquire(timeout=self.keep):
            return True
        with self._lock:
            if worker in self._idle:  # nobody handed it a job meanwhile: end
                self._idle.remove(worker)
                return False
        worker.wake.acquire()  # a job was handed over just as the wait timed out
        return True

    def idle(self) -> int:
        with self._lock:
            return len(self._idle)


class _Worker:
    __slots__ = ("job", "owner", "wake")

    def __init__(self, owner: Workers):
        self.owner = owner
        self.job: tuple[Callable[[], Any], str] | None = None
        self.wake = threading.Lock()
        self.wake.acquire()  # released by give(): a binary semaphore only this thread waits on

    def give(self, fn: Callable[[], Any], name: str) -> None:
        self.job = (fn, name)
        self.wake.release()

    def loop(self) -> None:
        me = threading.current_thread()
        base = me.name
        while True:
            job, self.job = self.job, None
            if job is not None:
                fn, me.name = job
                try:
                    fn()
                except Exception:  # Session.run catches its own; never lose the thread silently
                    log.exception("a connection's thread raised")
                me.name = base
            if not self.owner._rest(self):
                return


class Server:
    def __init__(
        self,
        service,
        sock: socket.socket,
        *,
        limits: Limits | None = None,
        identify: Callable[[socket.socket, str | None], Any] | None = None,
        socket_path: str | None = None,
        owns_path: bool = True,
        policy_paths: Callable[[], Iterable[str]] | None = None,
        reload_interval: float = 1.0,
        config_path: str | None = None,
        boot_config=None,
        pinned_keys: frozenset[str] = frozenset(),
    ):
        self.service = service
        self.sock = sock
        self.limits = limits or Limits()
        self.identify = identify or _identify_peer
        self.owns_path = owns_path
        if not owns_path:  # systemd's socket: report where it really is
            with contextlib.suppress(OSError):
                socket_path = sock.getsockname() or socket_path
        self.socket_path = socket_path
        self.counters = Counters()
        #: remote front-ends' sessions (PAM logins, tokens): none unless configured
        self.websessions = WebSessions(service, self)
        self.started = time.time()
        self._lock = threading.Lock()
        self._sessions: set[Session] = set()
        self._per_uid: dict[int, int] = defaultdict(int)
        self._stopping = False
        self._stop_requested = threading.Event()
        self._idle_cv = threading.Condition(self._lock)
        self._reload_lock = threading.Lock()
        self._reconnect_lock = threading.Lock()
        self.last_reload: dict[str, Any] | None = None
        #: this start's autostart pass (service.autostart), for status: None when this was not
        #: svirtd's first start since the host booted
        self.autostart_pass: dict[str, Any] | None = None
        #: the configuration file, re-read on every reload (see reconfig: live keys applied,
        #: keys that need a restart refused by name)
        self.reconfig = Reconfigurer(config_path, boot_config, pinned=pinned_keys)
        self.needs_restart: tuple[str, ...] = ()
        service_paths = policy_paths or (lambda: _service_policy_paths(service))
        self._policy_paths = lambda: [*service_paths(), *([config_path] if config_path else [])]
        self.watcher = PolicyWatcher(self.reload, self._policy_paths, reload_interval)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self.workers = Workers()
        #: the queue in front of the service (daemon.admission)
        self.admission = Admission(
            self.limits.svirtd_active_requests, self.limits.svirtd_slow_request_ms / 1000
        )

    # -- session bookkeeping (called from session threads) ------------------------------------
    def mark_idle(self, s: Session) -> bool:
        """The session waits for its next frame; False when we are stopping (end it)."""
        with self._lock:
            s.busy = False
            self._idle_cv.notify_all()
            return not self._stopping

    def begin_work(self, s: Session) -> bool:
        with self._lock:
            if self._stopping:
                return False
            s.busy = True
            return True

    def end_work(self, s: Session) -> None:
        with self._lock:
            s.busy = False
            self._idle_cv.notify_all()

    def forget(self, s: Session) -> None:
        with self._lock:
            if s in self._sessions:
                self._sessions.discard(s)
                self._per_uid[s.uid] -= 1
                if self._per_uid[s.uid] <= 0:
                    del self._per_uid[s.uid]
            self._idle_cv.notify_all()

    # -- the service, with one retry after a lost hypervisor connection -----------------------
    def run_service(
        self,
        fn: Callable[[], Any],
        retry_safe: Callable[[], bool] | None = None,
        *,
        who: int | None = None,
    ) -> Any:
        """Call the use-case layer; if the hypervisor connection died, reconnect and retry once.

        Only a *failed* reply (or an exception) together with a dead connection triggers the
        retry, so a healthy but refusing hypervisor is never asked twice.  ``retry_safe``:
        False once the first try has sent something the caller cannot take back (a streamed
        list's parts: a retry would send its rows twice); then there is no retry, only the
        reconnect for the next request.  ``who``: the uid whose turn the request waits for
        in the admission queue (each caller's requests in arrival order, callers in turn).
        """
        with self.admission(who):  # at most svirtd_active_requests at once
            return self._run_service(fn, retry_safe)

    def _run_service(self, fn: Callable[[], Any], retry_safe: Callable[[], bool] | None) -> Any:
        try:
            result = fn()
        except Exception as exc:
            if self._connection_problem() is None:
                raise
            first: Any = Reply(EXIT_FAILED, message=str(exc))
        else:
            reply = result[0] if isinstance(result, tuple) else result
            if reply.status != EXIT_FAILED or self._connection_problem() is None:
                return result
            first = result
        problem = self._reconnect()
        if problem:
            return _annotate(first, problem)
        if retry_safe is not None and not retry_safe():
            return first
        try:
            return fn()
        except Exception as exc:
            return Reply(
                EXIT_FAILED,
                message=f"the hypervisor connection was re-established but the retry failed: {exc}",
            )

    def _connection_problem(self) -> str | None:
        """None if the shared hypervisor connection is usable, else what is wrong with it.

        Asks the service if it can tell (``connection_alive()``), else libvirt itself
        (``virConnect.isAlive()``: a local check, no round trip).  Backends without a
        connection (xl) never have a problem here.
        """
        try:
            probe = getattr(self.service, "connection_alive", None)
            if probe is not None:
                return None if probe() else "the connection is closed"
            conn = getattr(self.service.backend, "connection", None)
            is_alive = getattr(conn, "isAlive", None)
            if is_alive is None or is_alive():
                return None
            return "the connection is closed"
        except Exception as exc:  # cannot even (re)open it
            return str(exc) or type(exc).__name__

    def _reconnect(self) -> str | None:
        """Reconnect once for all threads that noticed; returns an error text or None."""
        with self._reconnect_lock:
            if self._connection_problem() is None:  # another thread already reconnected
                return None
            self.counters.add("reconnects")
            log.warning("the hypervisor connection was lost (libvirtd restarted?); reconnecting")
            try:
                self.service.reconnect()
                problem = self._connection_problem()
            except Exception as exc:
                problem = str(exc) or type(exc).__name__
            if problem:
                log.error("reconnecting to the hypervisor failed: %s", problem)
                return (
                    "the connection to the hypervisor was lost (libvirtd restarted?) and "
                    f"reconnecting failed: {problem}"
                )
            log.info("hypervisor connection re-established")
            return None

    # -- admin requests -----------------------------------------------------------------------
    def admin(self, ident, action: str, interaction) -> Reply:
        refusal = self._admin_refusal(ident, action, interaction)
        if refusal is not None:
            return refusal
        if action == "status":
            return Reply(EXIT_OK, data=self.status())
        result = self.reload(f"requested by {ident.user} (uid {ident.uid})")
        if result.get("ok"):
            return Reply(EXIT_OK, data=result, message="policy reloaded")
        parts = list(result.get("config_errors") or [])
        if result.get("policy_errors"):
            parts.append(
                "the new policy was rejected; the previous one stays in force: "
                + "; ".join(map(str, result["policy_errors"]))
            )
        return Reply(
            EXIT_BAD_POLICY,
            data=result,
            message="; ".join(parts or map(str, result.get("errors") or ["unknown error"])),
            check="policy",
        )

    def _admin_refusal(self, ident, action: str, interaction) -> Reply | None:
        """Root may always ask; anyone else needs 'daemon-admin' on the host object (audited)."""
        if ident.uid == 0 and not getattr(ident, "requested_as", None):
            return None
        check = getattr(self.service, "authorize_host", None)
        if check is not None:
            return check(ident, "daemon-admin", interaction)
        gate = getattr(self.service, "gate", None)
        if gate is None:
            return Reply(EXIT_DENIED, message="daemon-admin: only root may ask", check="rbac")
        from secured_virt.access.operations import CATALOGUE

        target = self.service.host_target()
        verdict = gate.authorize(ident, CATALOGUE.get("daemon-admin"), target, interaction)
        if not verdict.allowed:
            return Reply(
                verdict.status or EXIT_DENIED, message=verdict.denial_message(), check=verdict.check
            )
        gate.finish(verdict, f"ok: {action}")
        return None

    def status(self) -> dict[str, Any]:
        with self._lock:
            active = len(self._sessions)
            busy = sum(1 for s in self._sessions if s.busy)
        try:
            service = self.service.status()
        except Exception as exc:
            service = {"error": f"service status failed: {exc}"}
        return {
            "daemon": {
                "version": VERSION,
                "protocol": P.PROTOCOL_VERSION,
                "pid": os.getpid(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
                "uptime_s": round(time.time() - self.started, 1),
                "socket": self.socket_path,
                "socket_activated": not self.owns_path,
                "connections": {"active": active, "busy": busy},
                "cpus": cpus.allowed(),
                "heap": heap.status(),
                "admission": self.admission.status(),
                "limits": dataclasses.asdict(self.limits),
            },
            "counters": self.counters.snapshot(),
            "audit": _audit_status(self.reconfig.boot, getattr(self.service, "audit", None)),
            "autostart": self._autostart_status(),
            "reload": {
                "watching": [p for p in self._policy_paths() if p],
                "last": self.last_reload,
                "needs_restart": list(self.needs_restart),
            },
            "service": service,
        }

    def _autostart_status(self) -> dict[str, Any]:
        """How many VMs are marked to start at the next boot, what this start's pass did
        (None: svirtd was restarted, the host was not booted since its last start), and the
        VMs libvirtd itself starts at boot, outside the gate (``libvirt_flag``)."""
        try:
            marked: int | str = len(self.service.autostart.wished())
        except Exception as exc:  # a service without autostart (a test double) or no state
            marked = f"unknown: {exc}"
        from secured_virt.service.autostart import libvirt_flagged

        try:
            flagged: list[str] | str = libvirt_flagged(self.service)
        except Exception as exc:  # the hypervisor cannot be asked now
            flagged = f"unknown: {exc}"
        return {"marked": marked, "this_boot": self.autostart_pass, "libvirt_flag": flagged}

    def autostart_at_boot(self) -> None:
        """svirtd's first start since the host booted starts the VMs marked with ``svirsh
        autostart``, each as the user who marked it and through the gate (service.autostart),
        on a thread of its own: requests are served meanwhile, and a VM booting does not hold
        up svirtd's start.  What it did is kept for ``status``."""
        from secured_virt.service.autostart import (
            first_after_boot,
            marker_path,
            start_wished,
            warn_libvirt_flagged,
        )

        if not self.socket_path or not first_after_boot(marker_path(self.socket_path)):
            return
        began = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.autostart_pass = {"state": "running", "began": began}

        def run() -> None:
            started, not_started, outside = [], {}, []
            try:
                for vm, _user, result in start_wished(self.service):
                    if getattr(result, "ok", False):
                        started.append(vm)
                    else:
                        not_started[vm] = getattr(result, "message", None) or str(result)
                outside = warn_libvirt_flagged(self.service)
            finally:
                self.autostart_pass = {
                    "state": "done",
                    "began": began,
                    "started": started,
                    "not_started": not_started,
                    "outside_the_gate": outside,
                }

        threading.Thread(target=run, name="svirtd-autostart", daemon=True).start()

    # -- hot reload ---------------------------------------------------------------------------
    def reload(self, trigger: str) -> dict[str, Any]:
        """Re-read the configuration file (live keys applied, restart keys refused by name),
        then UA/PA/ACM through the service; a bad file leaves the old policy in force.

        ``ok`` only when everything the files say is what svirtd now enforces: a key that
        needs a restart makes the reload fail (exit 4 for ``svirt-admin reload``) even though
        everything else was applied, so nobody is told "ok" while the old setting runs."""
        with self._reload_lock:
            listener.sd_notify("RELOADING=1")
            try:
                change = self.reconfig.apply(self.service)
                result = dict(self.service.reload())
            except Exception as exc:
                log.exception("policy reload (%s) raised", trigger)
                change = None
                result = {"ok": False, "errors": [f"reload raised: {exc}"], "versions": {}}
            finally:
                listener.sd_notify("READY=1")
            result["policy_errors"] = list(result.get("errors") or [])
            if change is not None:
                config_errors = change.errors(self.reconfig.path or "", self.reconfig.boot)
                self.needs_restart = change.needs_restart
                result["config"] = {
                    "applied": list(change.applied),
                    "needs_restart": list(change.needs_restart),
                }
                if config_errors:
                    result["ok"] = False
                    result["config_errors"] = config_errors
                    result["errors"] = config_errors + result["policy_errors"]
            result["trigger"] = trigger
            result["at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            self.last_reload = result
            freed = heap.refreeze()  # the old policy's cycles (daemon/heap.py)
            if freed:
                log.debug("reload (%s): %d objects of the previous state freed", trigger, freed)
        if result.get("ok"):
            self.counters.add("reloads_ok")
            log.info("policy reloaded (%s): %s", trigger, result.get("versions"))
        else:
            self.counters.add("reloads_failed")
            log.error(
                "policy reload (%s) rejected, the previous policy stays in force: %s",
                trigger,
                "; ".join(map(str, result.get("errors") or [])),
            )
        return result

    # -- main loop ----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Safe from a signal handler: flags and wakes the main loop."""
        self._stop_requested.set()
        self._wake()

    def request_reload(self, trigger: str = "SIGHUP") -> None:
        self.watcher.request(trigger)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def serve_forever(self) -> int:
        self.sock.setblocking(False)
        self.watcher.start()
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, "accept")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        log.info(
            "svirtd %s serving %s%s (protocol %d, pid %d)",
            VERSION,
            self.socket_path,
            "" if self.owns_path else ", a socket from systemd",
            P.PROTOCOL_VERSION,
            os.getpid(),
        )
        listener.sd_notify("READY=1")
        try:
            while not self._stop_requested.is_set():
                for key, _ in sel.select():
                    if key.data == "accept":
                        self._accept_all()
                    else:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
        finally:
            sel.close()
        return self.shutdown()

    def _accept_all(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: log, back off, keep serving
                log.error("accept failed: %s", exc)
                time.sleep(0.1)
                return
            try:
                self._start_session(conn)
            except Exception:
                log.exception("could not start a session")
                with contextlib.suppress(OSError):
                    conn.close()

    def _start_session(self, conn: socket.socket) -> None:
        # non-blocking for good: the session waits in protocol.wait_for with its deadlines, so
        # no frame pays a poll before its recv or a blocking-mode switch (settimeout)
        conn.setblocking(False)
        creds = listener.peer_creds(conn)
        uid = creds[1]
        self.counters.add("connections")
        with self._lock:
            refused = None
            if len(self._sessions) >= self.limits.max_connections:
                refused = f"too many connections ({self.limits.max_connections}); try again"
            elif self._per_uid[uid] >= self.limits.max_connections_per_uid:
                refused = (
                    f"uid {uid} already has {self.limits.max_connections_per_uid} connections "
                    "open; close some and try again"
                )
            if refused is None:
                session = Session(self, conn, creds)
                self._sessions.add(session)
                self._per_uid[uid] += 1
        if refused is not None:
            self.counters.add("refused_busy")
            log.warning("pid %d uid %d refused: %s", creds[0], uid, refused)
            with contextlib.suppress(OSError):
                P.send(conn, P.error_frame(P.E_BUSY, refused), 1.0)
            conn.close()
            return
        self.workers.run(session.run, f"svirtd-uid{uid}-pid{creds[0]}")

    def shutdown(self) -> int:
        """Stop accepting, end idle sessions, let busy ones finish (bounded), close the service."""
        log.info("svirtd stopping")
        listener.sd_notify("STOPPING=1")
        with contextlib.suppress(OSError):
            self.sock.close()
        self._remove_socket()
        self.watcher.stop()
        deadline = time.monotonic() + self.limits.shutdown_timeout
        with self._lock:
            self._stopping = True
            while True:
                for s in self._sessions:
                    if not s.busy:  # waiting for a frame: wake it up so it ends
                        with contextlib.suppress(OSError):
                            s.conn.shutdown(socket.SHUT_RDWR)
                busy = [s for s in self._sessions if s.busy]
                left = deadline - time.monotonic()
                if not busy or left <= 0:
                    break
                self._idle_cv.wait(min(left, 0.2))
        if busy:
            log.warning(
                "%d request(s) still running after %.0fs; stopping anyway: %s",
                len(busy),
                self.limits.shutdown_timeout,
                ", ".join(s.who for s in busy),
            )
        self._close_service()
        log.info("svirtd stopped")
        return 0

    def _remove_socket(self) -> None:
        if self.owns_path and self.socket_path:
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)

    def _close_service(self) -> None:
        for target in (self.service, getattr(self.service, "audit", None)):
            close = getattr(target, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception:
                log.exception("closing %s failed", type(target).__name__)
            return


def _annotate(reply_or_result, problem: str):
    """The failed reply, explained: the connection problem first, then what libvirt said."""
    reply = reply_or_result[0] if isinstance(reply_or_result, tuple) else reply_or_result
    text = f"{problem}; the request failed with: {reply.message}" if reply.message else problem
    fixed = Reply(EXIT_FAILED, reply.data, text, reply.check)
    return (fixed, None) if isinstance(reply_or_result, tuple) else fixed


def _audit_status(config, audit=None) -> dict[str, Any]:
    """Where the audit goes, whether syslog can receive it (access.syslog_check), and how the
    log's writes went (records per write, sync times: access.audit.WriteTimes)."""
    from secured_virt.access.syslog_check import audit_syslog_problem

    if config is None:
        return {}
    problem = audit_syslog_problem(config.audit_syslog)
    out = {"log": config.audit_log, "syslog": problem or ("yes" if config.audit_syslog else "no")}
    times = getattr(audit, "write_times", None)
    if times is not None:
        out["writes"] = times.snapshot()
    return out


def _identify_peer(conn: socket.socket, as_user: str | None):
    from secured_virt.access.identity import identify_peer

    return identify_peer(conn, as_user=as_user)


def _service_policy_paths(service) -> list[str]:
    """Files whose change triggers a reload: what the service says, else UA and PA."""
    paths = getattr(service, "watched_paths", None)
    if callable(paths):
        return list(paths())
    config = getattr(service, "config", None)
    return [p for p in (getattr(config, "ua", None), getattr(config, "pa", None)) if p]


# -- command line ---------------------------------------------------------------------------
def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """svirtd's options (also read by man/generate.py for svirtd(8))."""
    ap = argparse.ArgumentParser(
        prog="svirtd",
        description="secured-virt's privileged broker: serves svirsh for non-root users over "
        "a Unix socket, identifying them by their kernel credentials (SO_PEERCRED).",
        epilog="Signals: SIGHUP reloads UA/PA/ACM (so does a change to those files); SIGTERM "
        "stops after in-flight requests.  Socket activation: svirtd.socket (LISTEN_FDS).",
    )
    ap.add_argument("-c", "--config", help="configuration file (root only)")
    ap.add_argument("--socket", help="listen on this path instead of the configured one")
    ap.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"), type=str
    )
    ap.add_argument("--syslog", action="store_true", help="log to syslog instead of stderr")
    ap.add_argument("-V", "--version", action="version", version=f"svirtd {VERSION}")
    return ap


def _setup_logging(level: str, use_syslog: bool) -> None:
    handler: logging.Handler
    if use_syslog and not os.path.exists("/dev/log"):
        use_syslog = False
        print("svirtd: warning: /dev/log does not exist; logging to stderr", file=sys.stderr)
    if use_syslog:
        handler = logging.handlers.SysLogHandler(
            address="/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON
        )
        handler.setFormatter(logging.Formatter("svirtd[%(process)d]: %(levelname)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
        handler.setFormatter(logging.Formatter(stamp + "svirtd: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    _setup_logging(args.log_level, args.syslog)
    from secured_virt.config import CONFIG_PATH, ConfigError, load_config

    try:
        config = load_config(args.config, caller_uid=os.getuid())
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_BAD_POLICY
    if args.socket:
        if os.getuid() != 0:
            log.error("only root may choose the socket path (--socket)")
            return EXIT_USAGE
        config = dataclasses.replace(config, socket=args.socket)
    if os.geteuid() != 0:
        log.warning("running as uid %d, not root: the hypervisor may refuse us", os.geteuid())
    os.umask(0o077)
    if cpus.wanted(config):  # before anything starts a thread (daemon.cpu says why)
        cpu = cpus.run_on_one_cpu()
        if cpu is not None:
            log.info("svirtd's threads run on CPU %d (svirtd_one_cpu = yes)", cpu)

    try:
        from secured_virt.service import Service

        service = Service.from_config(config, watch_events=True)
    except Exception as exc:
        log.error("cannot start the service: %s", exc)
        return EXIT_BAD_POLICY
    from secured_virt.access.syslog_check import audit_syslog_problem

    problem = audit_syslog_problem(config.audit_syslog)
    if problem:  # once, at start; svirt-admin status repeats it
        log.warning("%s", problem)
    _recover_audit_log(service)

    try:
        sock = listener.from_systemd()
        activated = sock is not None
        if sock is None:
            sock = listener.bind_unix(
                config.socket, mode=config.socket_mode, group=config.socket_group
            )
    except listener.ListenError as exc:
        log.error("%s", exc)
        return EXIT_FAILED

    server = Server(
        service,
        sock,
        limits=Limits.from_config(config),
        socket_path=config.socket,
        owns_path=not activated,
        config_path=args.config or CONFIG_PATH,
        boot_config=config,
        pinned_keys=frozenset({"socket"} if args.socket else ()),
    )
    server.autostart_at_boot()
    signal.signal(signal.SIGTERM, lambda *_: server.request_stop())
    signal.signal(signal.SIGINT, lambda *_: server.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: server.request_reload("SIGHUP"))
    heap.settle()  # start-up's objects out of the collector's way (daemon/heap.py)
    return server.serve_forever()


def _recover_audit_log(service) -> None:
    """A line the last svirtd (or a direct svirsh) left half-written when it was killed is
    cut off into a ``recovered`` record now, not at the first request (access.audit)."""
    from secured_virt.access.audit import AuditError

    audit = getattr(service, "audit", None)
    if audit is None:
        return
    try:
        rec = audit.recover()
    except AuditError as exc:  # every request is refused until it is repaired: say so now
        log.error("%s", exc)
        return
    except OSError as exc:  # the log's directory unusable: the first append says the same
        log.error("cannot check the audit log: %s", exc)
        return
    if rec is not None:
        log.warning(
            "the audit log ended in an incomplete line (a writer was killed mid-write): its "
            "%d bytes were cut off and kept in record seq %d",
            rec["torn_bytes"],
            rec["seq"],
        )


def entry(*, require_isolated: bool = True) -> None:
    """The program: the console script, bin/ launcher and ``python -m`` start here, hardened
    first (secured_virt.hardening.start_program); never returns."""
    from secured_virt.hardening import start_program

    start_program(main, daemon=True, require_isolated=require_isolated)


if __name__ == "__main__":  # python -m: the caller chose the interpreter's flags
    entry(require_isolated=False)
