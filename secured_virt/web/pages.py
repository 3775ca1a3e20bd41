"""The console's HTML: plain, escaped, no inline script or style, readable without JavaScript.

Why hand-written strings and not a template engine: the pages are few and small, every value
goes through ``esc`` (html.escape with quotes) at one place per value, and nothing else needs
installing.  Forms work without JavaScript (POST, then a page saying what happened); the
scripts in ``static/`` only add live states, in-place answers and the terminal.
"""

from __future__ import annotations

import json
from html import escape
from urllib.parse import quote

#: the buttons the VM page can show, in this order (each only where the service says "may")
VM_ACTIONS = ("start", "shutdown", "reboot", "suspend", "resume", "destroy", "save", "restore")
#: host operations that open a page of their own
HOST_PAGES = (
    ("audit-read", "/audit", "Audit trail"),
    ("rbac-review", "/explain", "Explain"),
    ("policy-show", "/policy", "sHype policy"),
)
#: how each action is worded on its button and in its confirmation
LABELS = {
    "start": "Start",
    "shutdown": "Shut down",
    "reboot": "Reboot",
    "suspend": "Suspend",
    "resume": "Resume",
    "destroy": "Destroy",
    "save": "Save",
    "restore": "Restore",
}
STATUS_CLASS = {0: "ok", 1: "failed", 2: "failed", 3: "denied", 4: "failed"}


def esc(value) -> str:
    return escape("" if value is None else str(value), quote=True)


def layout(
    title: str,
    body: str,
    *,
    user: str | None = None,
    csrf: str | None = None,
    nav: tuple[str, ...] = (),
    scripts: tuple[str, ...] = ("/static/app.js",),
    styles: tuple[str, ...] = (),
    main_attrs: str = "",
) -> str:
    links = ""
    if user is not None:
        items = ['<a href="/vms">VMs</a>']
        items += [f'<a href="{href}">{esc(text)}</a>' for op, href, text in HOST_PAGES if op in nav]
        links = (
            '<nav aria-label="main">'
            + " ".join(items)
            + f'<span class="who">{esc(user)}</span>'
            + '<form method="post" action="/logout" class="logout">'
            + f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
            + '<button type="submit" id="logout">Log out</button></form></nav>'
        )
    css = "".join(
        f'<link rel="stylesheet" href="{esc(s)}">' for s in ("/static/style.css", *styles)
    )
    js = "".join(f'<script src="{esc(s)}" defer></script>' for s in scripts)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · secured-virt</title>{css}{js}</head>"
        f'<body><header><a class="brand" href="/vms">secured-virt</a>{links}</header>'
        f"<main{main_attrs}>{body}</main></body></html>\n"
    )


def flash(status: int | None, message: str | None, check: str | None = None) -> str:
    if not message:
        return '<p id="flash" class="flash" role="status" hidden></p>'
    cls = STATUS_CLASS.get(status, "failed")
    why = f' <span class="check">[{esc(check)}]</span>' if check else ""
    return f'<p id="flash" class="flash {cls}" role="status">{esc(message)}{why}</p>'


def login_page(csrf: str, message: str | None = None, status: int | None = None, user="") -> str:
    body = (
        "<h1>Log in</h1>"
        + flash(status, message)
        + '<form method="post" action="/login" class="login" id="login-form">'
        + f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        + '<label>User <input name="user" id="user" autocomplete="username" required '
        + f'value="{esc(user)}" maxlength="64" autocapitalize="none"></label>'
        + '<label>Password <input type="password" name="password" id="password" '
        + 'autocomplete="current-password" required maxlength="4096"></label>'
        + '<button type="submit" id="login">Log in</button></form>'
        + '<p class="hint">Your password is checked by the host\'s PAM (svirtd). Every '
        + "action you take here is checked and audited exactly as svirsh's would be.</p>"
    )
    return layout("Log in", body, scripts=())


def vm_rows(domains: list[dict], csrf: str) -> str:
    out = []
    for d in domains:
        name = d.get("name") or ""
        may = [op for op in VM_ACTIONS if op in (d.get("may") or ())]
        auth = set(d.get("auth") or ())
        label = d.get("acm_label")
        label_html = (
            f'<span class="label">{esc(label)}</span>'
            if label
            else ('<span class="muted">none</span>' if label == "" else "")
        )
        buttons = "".join(
            f'<button type="submit" name="op" value="{op}" class="op op-{op}"'
            + (' data-auth="1"' if op in auth else "")
            + f">{LABELS[op]}</button>"
            for op in may
        )
        actions = ""
        if may:
            needs = sorted(auth & set(may))
            pw = (
                '<label class="pw">Password for '
                + esc(", ".join(needs))
                + ' <input type="password" name="password" autocomplete="current-password" '
                + 'maxlength="4096"></label>'
                if needs
                else ""
            )
            actions = (
                f'<form method="post" action="/vm/{quote(name, safe="")}" class="act">'
                f'<input type="hidden" name="csrf" value="{esc(csrf)}">{buttons}{pw}</form>'
            )
        if "console" in (d.get("may") or ()):
            actions += f'<a class="console" href="/console/{quote(name, safe="")}">Console</a>'
        state = d.get("state") or "?"
        out.append(
            f'<tr data-vm="{esc(name)}"><th scope="row" data-title="VM">{esc(name)}</th>'
            f'<td data-title="State"><span class="state" data-state="{esc(state)}">'
            f"{esc(state)}</span></td>"
            f'<td data-title="Realm">{esc(d.get("realm") or "")}</td>'
            f'<td data-title="Owner">{esc(d.get("owner") or "")}</td>'
            f'<td data-title="Label">{label_html}</td>'
            f'<td data-title="Actions" class="actions">{actions}</td></tr>'
        )
    return "".join(out)


def vms_page(
    user: str,
    csrf: str,
    domains: list[dict],
    nav: tuple[str, ...],
    *,
    message: str | None = None,
    status: int | None = None,
    check: str | None = None,
) -> str:
    if domains:
        table = (
            '<table id="vms" class="vms"><thead><tr><th scope="col">VM</th>'
            '<th scope="col">State</th><th scope="col">Realm</th><th scope="col">Owner</th>'
            '<th scope="col">Label</th><th scope="col">Actions</th></tr></thead>'
            f"<tbody>{vm_rows(domains, csrf)}</tbody></table>"
        )
    else:
        table = '<p id="no-vms">No VM is visible to you. Ask root for a role (UA/PA).</p>'
    body = (
        f"<h1>Virtual machines <small>({len(domains)})</small></h1>"
        + flash(status, message, check)
        + '<p class="live" id="live" hidden>live</p>'
        + table
    )
    return layout(
        "VMs",
        body,
        user=user,
        csrf=csrf,
        nav=nav,
        main_attrs=f' data-csrf="{esc(csrf)}" data-page="vms"',
    )


def console_page(user: str, csrf: str, name: str, nav: tuple[str, ...]) -> str:
    body = (
        f"<h1>Console: {esc(name)}</h1>"
        '<p id="console-status" class="flash" role="status">connecting…</p>'
        '<div id="terminal" class="terminal"></div>'
        '<p class="hint">Keys go to the guest\'s serial console. Leave with "Back to VMs"; '
        "the console is released for the next user.</p>"
        '<p><a href="/vms">Back to VMs</a></p>'
    )
    return layout(
        f"Console {name}",
        body,
        user=user,
        csrf=csrf,
        nav=nav,
        scripts=(
            "/static/vendor/xterm/xterm.js",
            "/static/vendor/xterm/addon-fit.js",
            "/static/console.js",
        ),
        styles=("/static/vendor/xterm/xterm.css",),
        main_attrs=f' data-csrf="{esc(csrf)}" data-vm="{esc(name)}" data-page="console"',
    )


def refused_page(user, csrf, nav, title: str, status: int, message: str, check=None) -> str:
    body = f"<h1>{esc(title)}</h1>" + flash(status, message, check)
    return layout(title, body, user=user, csrf=csrf, nav=nav)


def audit_page(user, csrf, nav, filters: dict, data: dict) -> str:
    dec = filters.get("decision") or ""
    options = "".join(
        f'<option value="{v}"{" selected" if v == dec else ""}>{t}</option>'
        for v, t in (("", "any"), ("allowed", "allowed"), ("denied", "denied"))
    )
    form = (
        '<form method="get" action="/audit" class="filters" id="audit-filter">'
        f'<label>User <input name="user" value="{esc(filters.get("user"))}"></label>'
        f'<label>VM <input name="vm" value="{esc(filters.get("vm"))}"></label>'
        f'<label>Decision <select name="decision">{options}</select></label>'
        '<button type="submit">Filter</button></form>'
    )
    rows = []
    for r in data.get("records", ()):
        if r.get("type") == "outcome":
            rows.append(
                f'<tr class="outcome"><td>{esc(r.get("seq"))}</td><td>{esc(r.get("time"))}</td>'
                f"<td>{esc(r.get('user'))}</td><td>{esc(r.get('op'))}</td>"
                f"<td>{esc(r.get('vm'))}</td><td>outcome of #{esc(r.get('ref'))}</td>"
                f"<td>{esc(r.get('outcome'))}</td><td></td></tr>"
            )
            continue
        verdict = r.get("verdict") or r.get("type") or "?"  # "recovered" has no verdict
        via = r.get("via") or ""
        if r.get("peer"):
            via += f" {r['peer']}"
        rows.append(
            f'<tr class="{esc(verdict)}"><td>{esc(r.get("seq"))}</td><td>{esc(r.get("time"))}</td>'
            f"<td>{esc(r.get('user'))}</td><td>{esc(r.get('op'))}</td><td>{esc(r.get('vm'))}</td>"
            f'<td class="verdict">{esc(verdict)} [{esc(r.get("check"))}]</td>'
            f"<td>{esc(r.get('rule'))}</td><td>{esc(via)}</td></tr>"
        )
    table = (
        '<table id="audit" class="audit"><thead><tr><th>#</th><th>Time</th><th>User</th>'
        "<th>Operation</th><th>VM</th><th>Decision</th><th>Rule</th><th>Via</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    shown = len(data.get("records", ()))
    body = (
        "<h1>Audit trail</h1>"
        + form
        + f'<p class="hint">{shown} of {esc(data.get("matched", shown))} matching records, '
        "newest first.</p>" + table
    )
    return layout("Audit", body, user=user, csrf=csrf, nav=nav)


def explain_page(user, csrf, nav, asked: dict, ops: list[str], answer=None, refusal=None) -> str:
    options = "".join(
        f"<option{' selected' if o == asked.get('operation') else ''}>{esc(o)}</option>"
        for o in ops
    )
    form = (
        '<form method="get" action="/explain" class="filters" id="explain-form">'
        f'<label>User <input name="user" required value="{esc(asked.get("user"))}"></label>'
        f'<label>Operation <select name="operation">{options}</select></label>'
        f'<label>VM <input name="vm" value="{esc(asked.get("vm"))}" '
        'placeholder="empty for host operations"></label>'
        '<button type="submit">Explain</button></form>'
    )
    out = ""
    if refusal is not None:
        out = flash(*refusal)
    elif answer is not None:
        verdict = "ALLOWED" if answer.get("allowed") else "DENIED"
        rb = answer.get("rbac", {})
        lines = [
            f"{verdict}: {answer.get('user')} {answer['operation']['name']} on {answer.get('vm')}",
            "  RBAC: "
            + (
                "allowed - " + (rb.get("rule") or "")
                if rb.get("allowed")
                else "denied - " + (rb.get("reason") or "")
            ),
        ]
        if answer.get("realm"):
            lines.append(f"  realm: denied - {answer['realm']}")
        acm = answer.get("acm")
        if acm:
            lines.append(
                f"  ACM: {'allowed' if acm.get('allowed') else 'denied'} - "
                f"{acm.get('reason')} (label {acm.get('label')})"
            )
        lines += ["", answer.get("explanation_text", "")]
        cls = "ok" if answer.get("allowed") else "denied"
        out = f'<pre id="explanation" class="explain {cls}">{esc(chr(10).join(lines))}</pre>'
    body = "<h1>Explain a decision</h1>" + form + out
    return layout("Explain", body, user=user, csrf=csrf, nav=nav)


def policy_page(user, csrf, nav, types=None, conflicts=None, labels=None, refusal=None) -> str:
    if refusal is not None:
        return refused_page(user, csrf, nav, "sHype policy", *refusal)
    ste = ", ".join(types.get("ste", ())) if types else ""
    chw = ", ".join(types.get("chwall", ())) if types else ""
    sets = "".join(
        f"<li><b>{esc(cs.get('name'))}</b>: {esc(', '.join(cs.get('types', ())))}</li>"
        for cs in (conflicts or {}).get("conflict_sets", ())
    )
    recs = (labels or {}).get("records") or []
    rows = "".join(
        f"<tr><td>{esc(r.get('name') if isinstance(r, dict) else r)}</td>"
        f"<td>{esc(json.dumps(r, default=str) if isinstance(r, dict) else '')}</td></tr>"
        for r in recs
    ) or "".join(f"<tr><td>{esc(n)}</td><td></td></tr>" for n in (labels or {}).get("labels", ()))
    body = (
        f"<h1>sHype policy <small>{esc((labels or {}).get('policy'))}</small></h1>"
        f'<h2>Types</h2><p id="ste-types"><b>STE:</b> {esc(ste)}</p>'
        f'<p id="chwall-types"><b>Chinese Wall:</b> {esc(chw)}</p>'
        f'<h2>Conflict sets</h2><ul id="conflict-sets">{sets}</ul>'
        f'<h2>Labels</h2><table id="labels"><thead><tr><th>Label</th><th>Record</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
    )
    return layout("sHype policy", body, user=user, csrf=csrf, nav=nav)
