"""What the network front-ends share: the svirtd link, TLS, the connection cap, ``main()``.

The secured Xen-API (``xenapi``) and the web console (``web``) are two faces of one design
(docs/protocol.md, "Sessions for front-ends"): an unprivileged process, HTTPS only, off by
default and on loopback, every request a session frame to svirtd.  The plumbing under that
design lives here once, so the two cannot drift apart on what matters for security (how a key
file is checked, how many connections a peer may hold open, what svirtd is told):

* ``link``     — svirtd's frames over asyncio: a small pool of connections for requests, and
  the console (``session_console``), which turns its own connection into raw bytes;
* ``tls``      — the certificate: a configured pair, or a self-signed one made once (key 0600);
* ``listener`` — the HTTPS listener with its connection cap and handshake deadline, the
  peer's address for the audit record, the file-descriptor limit;
* ``program``  — the program's start: refuse root, read the root-owned configuration, stay
  off unless turned on, make the certificate, serve.

Each front-end names itself (``Frontend``: program name, configuration prefix, certificate
subject); nothing here knows Xen-API or HTML.

May import: the front-end helpers ``client`` and ``requests`` (frame limits, protocol version,
``Reply``) and ``config``.  Never ``service``, ``backends`` or the role files: these processes
could not read them, and must not try.
"""
