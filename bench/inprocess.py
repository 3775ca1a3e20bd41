"""What the in-process benchmarks (bench_list.py, bench_web.py) share: a median timer, and a
use-case layer (``Service``) on libvirt's test driver over a node of many domains.

Both measure ``Service.handle`` in this one process, without svirtd or other uids (that is
benchhost.py's job), so they build the same host: the node file, a private audit log and a
config naming the role files.  Nothing here is timed.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from pathlib import Path


def median_ms(fn, repeat: int, fresh=None) -> float:
    """Median of ``repeat`` timed calls; with ``fresh``, each call gets ``fresh()``'s value,
    made before the timer starts (new string objects: no hash cached by the last call)."""
    times = []
    for _ in range(repeat):
        arg = fresh() if fresh is not None else None
        t = time.perf_counter()
        fn() if fresh is None else fn(arg)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o644)
    return path


def test_driver_config(tmp: Path, names: list[str], ua: Path, pa: Path, owner: str | None = None):
    """A config for ``Service.from_config``: a test-driver node in ``tmp`` holding ``names``
    (every other one running; with ``owner``, each carrying secured-virt's metadata naming
    that owner, as a host's domains do), the role files ``ua`` and ``pa``, an audit log in
    ``tmp``."""
    from secured_virt.config import default_config
    from secured_virt.confinement import vmmeta

    node = tmp / "node.xml"
    meta = (
        f"<metadata><svirt:vm xmlns:svirt='{vmmeta.NS}'><svirt:owner>{owner}</svirt:owner>"
        "</svirt:vm></metadata>"
        if owner
        else ""
    )
    doms = "".join(
        f"<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
        f"<name>{n}</name><memory>65536</memory><os><type>hvm</type></os>{meta}"
        f"<test:runstate>{1 if i % 2 else 5}</test:runstate></domain>"
        for i, n in enumerate(names)
    )
    write(node, f"<node>{doms}</node>")
    logdir = tmp / "log"
    logdir.mkdir(mode=0o700)
    return dataclasses.replace(
        default_config(),
        uri=f"test://{node}",
        ua=str(ua),
        pa=str(pa),
        audit_log=str(logdir / "audit.log"),
        audit_syslog=False,
    )
