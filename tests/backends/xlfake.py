"""A stand-in for the ``xl`` binary (there is no Xen here), answering from recorded outputs.

It replaces ``subprocess.run`` inside the xl backend only, records every call with its
keyword arguments, and fails the test on any command it was not told about - so a test sees
exactly which argv lists the backend runs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

XL_DATA = Path(__file__).resolve().parents[1] / "data" / "xl"
XL = "/usr/sbin/xl"
RUNNING = {"Domain-0": 0, "web-01": 3, "db.prod": 5, "build-2": 7, "crashy-4": 9}


def data(name: str) -> str:
    return (XL_DATA / name).read_text()


class FakeXl:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict]] = []
        self.responses: dict[tuple[str, ...], tuple[int, str, str]] = {}
        self.running = dict(RUNNING)

    def on(self, *args: str, out: str = "", err: str = "", rc: int = 0) -> None:
        self.responses[tuple(args)] = (rc, out, err)

    @property
    def argvs(self) -> list[list[str]]:
        """Every call's arguments after the xl path."""
        return [argv[1:] for argv, _kw in self.calls]

    def __call__(self, argv, **kw):
        self.calls.append((list(argv), kw))
        key = tuple(argv[1:])
        if key in self.responses:
            rc, out, err = self.responses[key]
            return subprocess.CompletedProcess(argv, rc, out, err)
        return self._default(argv, key)

    def _default(self, argv, key):
        def done(rc=0, out="", err=""):
            return subprocess.CompletedProcess(argv, rc, out, err)

        if key == ("list",):
            return done(out=data("list.txt"))
        if key == ("list", "-l"):
            return done(out=data("list-l.json"))
        if key == ("info",):
            return done(out=data("info.txt"))
        if len(key) == 3 and key[:2] == ("domid", "--"):
            name = key[2]
            if name in self.running:
                return done(out=f"{self.running[name]}\n")
            return done(
                rc=1,
                err=f"Can't get domid of domain name '{name}', maybe this domain does not exist.\n",
            )
        if key[:2] == ("list", "--") or key[:3] == ("list", "-l", "--"):
            name = key[-1]
            if name not in self.running:
                return done(rc=1, err=f"{name} is an invalid domain identifier (rc=-6)\n")
            long = key[1] == "-l"
            recorded = XL_DATA / (f"list-l-{name}.json" if long else f"list-{name}.txt")
            if recorded.exists():
                return done(out=recorded.read_text())
            raise AssertionError(f"no recorded output for xl {' '.join(key)}")
        raise AssertionError(f"unexpected xl call: {argv!r}")
