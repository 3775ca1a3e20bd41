"""Role files: root's UA (user -> roles) and PA (role -> operations on VMs) XML files.

Owns loading them safely for the gate (``store``: trusted-file checks, last good copy), and the
visudo-like editing cycle of ``svirt-admin edit|grant|assign|...``: structured edits of the
documents (``edit``), what an edit changes for whom (``impact``), running the caller's editor
(``editor``) and the locked, validated, atomic install (``install``).

"Policy" alone in this project means the sHype/ACM policy (``policy/``, ``secured_virt.shype``);
these are the *role files*.  May import ``rbac``, the operation catalogue
(``secured_virt.access.operations``) and the shared helpers; never a backend, the service or
sHype code.
"""
