"""Run every benchmark in bench/ and print their tables.

Each bench_*.py prints a markdown table and writes bench/out/<name>.json; results worth keeping
are copied by hand into bench/RESULTS.md with the machine and date.  Benchmarks are never run
by the test suite (timing on a shared machine is noise; tests assert behaviour).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def main() -> int:
    (HERE / "out").mkdir(exist_ok=True)
    only = set(sys.argv[1:])
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        if only and script.stem.removeprefix("bench_") not in only:
            continue
        print(f"\n## {script.stem}\n", flush=True)
        rc = subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode
        if rc:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
