"""Access: who is asking, and may they.

Owns the caller's identity (kernel credentials: real uid, ``SUDO_UID`` only under a real uid 0,
``SO_PEERCRED``), password checks through PAM and their short-lived credential cache, the roles a
caller has activated (dynamic separation of duty), the operation catalogue (ids, names, kinds,
scopes: a file format), the gate that joins the RBAC decision to the sHype/ACM verdict, and the
hash-chained audit log every decision is written to.

May import ``rbac``, the shared top-level helpers (``secured_virt.fsutil``, ``requests``,
``hardening``, ``config``) and nothing else of ``secured_virt``: the gate is handed its
mediation as a callable, so this room knows no VM, no backend and no sHype code.  The package
itself imports nothing, so a client that only needs the catalogue stays fast.
"""
