"""Policy hot reload: on SIGHUP, or when a UA/PA/ACM file changes on disk.

Files are polled once a second by (device, inode, size, mtime, ctime).  Polling is chosen over
inotify because it needs no ctypes, sees a file replaced by rename (the way visudo-like editors
and ``svirt-admin edit`` install policies) exactly like an in-place write, and costs a handful
of stat() calls a second.  The signature is taken *before* reloading, so a file still being
written when we read it is read again on the next tick: a half-written file is rejected (the
last good policy stays), the finished one is then loaded.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger("svirtd")


def file_signature(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError as exc:
        return ("missing", exc.errno)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class PolicyWatcher:
    """A thread that calls ``reload(trigger)`` when asked to or when a watched file changes."""

    def __init__(
        self,
        reload: Callable[[str], object],
        paths: Callable[[], Iterable[str]],
        interval: float = 1.0,
    ):
        self._reload = reload
        self._paths = paths
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._requested: list[str] = []
        self._lock = threading.Lock()
        self._seen: dict[str, tuple] = {}
        self._thread = threading.Thread(target=self._run, name="svirtd-reload", daemon=True)

    def start(self) -> None:
        self._seen = self._snapshot()
        self._thread.start()

    def request(self, trigger: str) -> None:
        """Reload soon, from the watcher thread (safe to call from a signal handler's loop)."""
        with self._lock:
            self._requested.append(trigger)
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _snapshot(self) -> dict[str, tuple]:
        return {p: file_signature(p) for p in self._paths() if p}

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                requested, self._requested = self._requested, []
            now = self._snapshot()
            changed = [p for p, sig in now.items() if self._seen.get(p) != sig]
            self._seen = now
            if requested:
                trigger = requested[0]
            elif changed:
                trigger = "changed on disk: " + ", ".join(changed)
            else:
                continue
            try:
                self._reload(trigger)
            except Exception:  # a reload bug must not kill hot reload for good
                log.exception("policy reload (%s) failed unexpectedly", trigger)
