"""svirt-admin status | reload: ask the running svirtd (root, or daemon-admin on the host).

svirt-admin status [--json]    uptime, policy versions (RBAC digest, sHype policy), counters,
                               and the last reload's outcome (a rejected file says why)
svirt-admin reload             re-read UA/PA and the sHype state now (like SIGHUP)
"""

from __future__ import annotations

import json
import sys

from secured_virt.requests import EXIT_FAILED, EXIT_OK


def _socket(args) -> str:
    """The configured socket.  ``--config`` is root's alone, and under sudo the caller is the
    invoking user (so ``sudo svirt-admin --config X reload`` is refused, exit 4).  The client
    connects with the invoker's credentials too, so svirtd checks *their* daemon-admin right
    and audits them: ``sudo`` adds nothing to what ``svirt-admin reload`` may do."""
    from secured_virt.access.identity import invoking_uid
    from secured_virt.config import load_config

    return load_config(args.config, caller_uid=invoking_uid()).socket


def cmd_status(args) -> int:
    from secured_virt import client

    path = _socket(args)
    if not client.daemon_available(path):
        sys.stderr.write(f"svirtd is not running (no socket at {path})\n")
        return EXIT_FAILED
    try:
        reply = client.admin_reload(path) if args.command == "reload" else client.admin_status(path)
    except client.ClientError as exc:
        sys.stderr.write(f"svirt-admin: {exc}\n")
        return exc.status
    if not reply.ok:
        sys.stderr.write(f"svirt-admin: {reply.message}\n")
        return reply.status
    if args.json or not isinstance(reply.data, dict):
        print(json.dumps(reply.data, indent=2, sort_keys=True))
        return EXIT_OK
    _print(reply.data)
    return EXIT_OK


def _print(d: dict, indent: str = "") -> None:
    """The status for people (``--json`` keeps the raw values): times as local dates, lists
    one item a line, a message spanning lines indented under its key, never Python reprs."""
    for key in sorted(d):
        value = d[key]
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print(value, indent + "  ")
        elif isinstance(value, (list, tuple)):
            if not value:
                print(f"{indent}{key}: none")
                continue
            print(f"{indent}{key}:")
            for item in value:
                if isinstance(item, dict):
                    print(f"{indent}  -")
                    _print(item, indent + "    ")
                else:
                    _lines(f"{indent}  - ", _shown(key, item), indent + "    ")
        else:
            _lines(f"{indent}{key}: ", _shown(key, value), indent + "  ")


def _shown(key: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("_at") and isinstance(value, (int, float)):  # an epoch (loaded_at)
        import time

        return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(value))
    return str(value)


def _lines(first: str, text: str, rest: str) -> None:
    lines = text.splitlines() or [""]
    print(first + lines[0])
    for line in lines[1:]:
        print(rest + line)


def register(sub, add, files) -> None:
    for name, text in (
        ("status", "show svirtd's uptime, policy versions and counters"),
        ("reload", "make svirtd re-read UA/PA and the sHype state now"),
    ):
        sp = add(name, cmd_status, text, f"svirt-admin {name}")
        sp.add_argument("--json", action="store_true", help="print as JSON")
