"""Run as a separate process by test_host_categories: allocate category pairs on a shared state
directory from several threads of one process, all released at once by a start time, and
print the pairs as JSON.  Each process has its own libvirt test driver (test:///default), which
runs one domain ("test") without a pair, so only the shared lock and records keep the pairs
apart across processes."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from secured_virt.backends.libvirt_backend import LibvirtBackend
from secured_virt.shype.categories import HostCategories


def main() -> int:
    state_dir, tag, threads, per_thread, start_at, cats = sys.argv[1:7]
    backend = LibvirtBackend("test:///default")
    lock = threading.Lock()  # guards out; the backend is only used under the host lock
    host = HostCategories(state_dir, lambda: backend, categories=int(cats))
    out: list[tuple[str, str]] = []
    errors: list[str] = []

    def work(t: int) -> None:
        while time.time() < float(start_at):
            time.sleep(0.001)
        for i in range(int(per_thread)):
            key = f"{tag}-{t}-{i}"
            try:
                pair = host.reserve(key, key)
            except Exception as exc:  # reported to the test, which fails on it
                errors.append(f"{key}: {exc!r}")
                continue
            with lock:
                out.append((key, str(pair)))

    ts = [threading.Thread(target=work, args=(t,)) for t in range(int(threads))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps({"pairs": out, "errors": errors}), flush=True)
    sys.stdin.read()  # stay alive (so our in-flight records count) until the test is done
    return 0


if __name__ == "__main__":
    sys.exit(main())
