"""A small stand-in for secured_virt.service.Service, used to test svirtd's own machinery.

The daemon's job - framing, identity from the kernel, limits, PAM round trips, progress,
console relay, reload, reconnect, shutdown - does not depend on what the use-case layer does
with a request, so these tests drive it with a service whose behaviour they can see directly:
it echoes the identity it was handed, asks for passwords, sleeps, raises, and reads a tiny
JSON "policy" from disk so that hot reload has something real to accept or reject.  Tests of
the daemon with the real Service live in test_real_service.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time

from secured_virt.requests import EXIT_BAD_POLICY, EXIT_DENIED, EXIT_FAILED, EXIT_OK, Reply


class PolicyFileError(Exception):
    pass


def read_policy(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise PolicyFileError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("allow"), dict):
        raise PolicyFileError(f"{path}: needs an 'allow' object")
    return data


class PipeStream:
    """A console 'stream' with libvirt's virStream methods, echoing what it is sent in upper
    case; ends when it receives b'quit'."""

    def __init__(self, banner: bytes, blocking: bool):
        self.r, self.w = os.pipe()
        self.blocking = blocking
        if not blocking:
            os.set_blocking(self.r, False)
        os.write(self.w, banner)
        self.state = "open"
        self.closed = threading.Event()

    def recv(self, n: int):
        try:
            return os.read(self.r, n)
        except BlockingIOError:
            return -2
        except OSError:
            return b""

    def send(self, data: bytes) -> int:
        if b"quit" in data:
            os.close(self.w)
            return len(data)
        os.write(self.w, data.upper())
        return len(data)

    def finish(self) -> None:
        self._close("finished")

    def abort(self) -> None:
        self._close("aborted")

    def _close(self, state: str) -> None:
        if self.state == "open":
            self.state = state
            for fd in (self.w, self.r):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.closed.set()


class FakeService:
    def __init__(self, workdir: str):
        self.workdir = workdir
        self.policy_path = os.path.join(workdir, "policy.json")
        self.events_path = os.path.join(workdir, "events.log")
        self.hv_path = os.path.join(workdir, "hypervisor")  # contents: "up" or "down"
        self.policy = read_policy(self.policy_path)
        self.connected = True
        self.lock = threading.Lock()
        self.handled = 0
        self.streams: list[PipeStream] = []

    # -- what svirtd calls --------------------------------------------------------------------
    def watched_paths(self):
        return [self.policy_path]

    def reload(self) -> dict:
        try:
            new = read_policy(self.policy_path)
        except PolicyFileError as exc:
            return {"ok": False, "errors": [str(exc)], "versions": self._versions()}
        self.policy = new
        return {"ok": True, "errors": [], "versions": self._versions()}

    def _versions(self) -> dict:
        return {"fake": self.policy.get("version")}

    def status(self) -> dict:
        return {"policy": self._versions(), "handled": self.handled}

    def connection_alive(self) -> bool:
        return self.connected and self._hv_up()

    def _hv_up(self) -> bool:
        try:
            with open(self.hv_path) as fh:
                return fh.read().strip() != "down"
        except OSError:
            return True

    def reconnect(self) -> None:
        self._event("reconnect")
        self.connected = self._hv_up()

    def close(self) -> None:
        self._event(f"closed after {self.handled} requests")

    def handle(self, ident, request, interaction) -> Reply:
        with self.lock:
            self.handled += 1
        self._event(f"{ident.user} {request.command}")
        cmd, args = request.command, request.args
        if cmd == "whoami":
            return Reply(EXIT_OK, data=ident.as_dict())
        if cmd == "echo":
            return Reply(EXIT_OK, data=args)
        if cmd == "sleep":
            time.sleep(float(args.get("seconds", 1)))
            return Reply(EXIT_OK, data={"slept": args.get("seconds", 1)})
        if cmd == "auth":
            pw = interaction.ask_password("Password for fake PAM: ")
            if pw == "secret":
                return Reply(EXIT_OK, data={"tty": interaction.tty})
            return Reply(EXIT_DENIED, message="authentication failed", check="pam")
        if cmd == "progress":
            n = int(args.get("steps", 3))
            for i in range(1, n + 1):
                interaction.progress(i, n)
            return Reply(EXIT_OK)
        if cmd == "crash":
            raise RuntimeError("fake service bug")
        if cmd == "big":
            return Reply(EXIT_OK, data="x" * int(args.get("size", 1000)))
        if cmd == "hv":
            if not self.connection_alive():
                return Reply(EXIT_FAILED, message="lost the connection to libvirt")
            return Reply(EXIT_OK, data={"hv": "ok"})
        # anything else: an operation checked against the JSON policy
        if ident.uid == 0 and not ident.requested_as:
            return Reply(EXIT_OK, data={"op": cmd, "user": "root"})
        if ident.as_refused:
            return Reply(EXIT_DENIED, message="--as is root's alone", check="identity")
        user = ident.requested_as or ident.user
        if self.policy is None:
            return Reply(EXIT_BAD_POLICY, message="no policy")
        if cmd in self.policy["allow"].get(user, []):
            return Reply(EXIT_OK, data={"op": cmd, "user": user})
        return Reply(EXIT_DENIED, message=f"denied: {user} may not {cmd}", check="rbac")

    def authorize_host(self, ident, op_name, interaction):
        """None when allowed; the fake grants host operations to the policy's "admins"."""
        if ident.user in self.policy.get("admins", []):
            return None
        return Reply(EXIT_DENIED, message=f"denied: {ident.user} may not {op_name}", check="rbac")

    def open_console(self, ident, name, interaction):
        if name not in ("vm1", "vm2"):
            return Reply(EXIT_FAILED, message=f"failed to get domain '{name}'"), None
        if ident.uid != 0 and "console" not in self.policy["allow"].get(ident.user, []):
            return Reply(EXIT_DENIED, message="denied: console", check="rbac"), None
        # vm1 behaves like a blocking virStream, vm2 like a non-blocking one (recv -> -2)
        stream = PipeStream(b"fake console ready\n", blocking=name == "vm1")
        self.streams.append(stream)
        return Reply(EXIT_OK, data={"message": f"Connected to domain '{name}'"}), stream

    def _event(self, text: str) -> None:
        with self.lock, open(self.events_path, "a") as fh:
            fh.write(text + "\n")
