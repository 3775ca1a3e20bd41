"""The secured Xen-API: seed 003's "secured-xen-API", XML-RPC over HTTPS, in front of svirtd.

This room is a front-end that decides nothing.  It runs as its own unprivileged system user
(``svirt-xenapi``), speaks Xen-API to the network, and turns every call into requests on
svirtd's socket: passwords go to svirtd's PAM (``session_login``), and everything else runs
as the user a session token names (``session_request``), through the same ``Service`` and
gate as svirsh (docs/protocol.md, "Sessions for front-ends").  So the Xen-API can never
decide differently from svirsh, and this process can act only for users holding a token.

Modules, one job each:

* ``xmlrpc``  — safe XML-RPC decoding (expat with DTDs refused: no entities at all) and
  encoding of Xen-API result structs;
* ``api``     — the Xen-API method table: arity, Service command, result shape, errors;
* ``records`` — Service replies as Xen-API records (VM, host, xs_policystate);
* ``server``  — the XML-RPC endpoint on aiohttp, its body limit, ``main()``.

What both network front-ends share — the svirtd link, the certificate, the listener with its
connection cap, the program's start-up rules — is ``secured_virt.netfront``.

May import: ``netfront``, the front-end helpers ``client`` and ``requests``, ``config``,
``policy.errors`` (Xen's XSERR numbers, one table for the whole project).  Never
``service``, ``backends`` or the role files: this process could not read them, and must not
try.
"""
