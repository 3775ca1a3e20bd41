"""The web console: seed 003's GUI (Figure 2) on the same Service, gate and sessions as svirsh.

This room is a front-end that decides nothing.  It runs as its own unprivileged system user
(``svirt-web``), serves HTML over HTTPS (aiohttp), and turns every click into requests on
svirtd's socket with the session frames of docs/protocol.md (``via=web``): the password goes
to svirtd's PAM (``session_login``), everything else runs as the user the session token
names (``session_request``, ``session_console``).  The browser's cookie *is* svirtd's token,
so this process keeps no session of its own: logging out ends the token in svirtd at once,
and a restart of this process logs nobody out and lets nobody in.

What the page shows comes from the service too: the VMs the user may see, with the labels
``getlabel`` allows, and for each VM the buttons of the operations RBAC would let the user try
(``vm-actions``, one request per page).  Every button still goes through the gate; a refusal
shows the gate's reason.

Modules, one job each:

* ``security`` — cookies, CSRF tokens, Origin checks, security headers (CSP, no framing);
* ``pages``    — the HTML, escaped, no inline script or style;
* ``app``      — routes and handlers (login, VMs, actions, audit, explain, policy, logout);
* ``live``     — live VM states over a WebSocket, one svirtd poll per session;
* ``consolews``— the serial console over a WebSocket, relayed by svirtd's console relay;
* ``server``   — configuration, TLS, limits, ``main()``.

``static/`` holds the little JavaScript and CSS, and ``static/vendor/xterm`` the terminal
widget (npm ``@xterm/xterm`` 6.0.0 and ``@xterm/addon-fit`` 0.11.0, MIT, shipped here: no
CDN at run time; Debian's ``libjs-xterm`` ships a non-working stub).

May import: ``netfront`` (the svirtd link with its console, the certificate, the listener
and start-up rules both network front-ends share), the front-end helpers ``client`` and
``requests``, ``config``, ``access.operations`` (the catalogue's names).  Never ``service``,
``backends`` or the role files.
"""
