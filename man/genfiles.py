"""Writing or checking generated files: the one ``main`` of man/generate.py and
completion/generate.py.

Both write files made from the programs' own definitions, and both are run by the tests with
``--check`` (exit 1, naming the stale files and the command that rewrites them), so that a
command changed without regenerating its page or its completion script fails CI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def generator_main(
    argv: list[str] | None,
    doc: str,
    files: dict[str, Callable[[], str]],
    *,
    what: str,
    here: Path,
) -> int:
    """Write each of ``files`` (name -> the function making its text) into ``here`` (or
    --dir), mode 0644; with --check, write nothing and exit 1 if any is missing or differs.
    ``what`` names one file in the help ("page", "script")."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--check", action="store_true", help=f"exit 1 if a {what} is out of date")
    ap.add_argument("--dir", default=str(here), help=f"where to write (default: {here.name}/)")
    args = ap.parse_args(argv)
    stale = []
    for name, make in files.items():
        path = Path(args.dir) / name
        text = make()
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
            continue
        path.write_text(text)
        path.chmod(0o644)
    if stale:
        sys.stderr.write(
            "out of date: " + ", ".join(stale) + f"\nrun: python {here.name}/generate.py\n"
        )
        return 1
    return 0
