"""Confinement: what an allowed request may reach.

Owns the checks that bound what a caller's domain can touch once RBAC has said yes: the disk
fence (which host files a non-root caller's domain may use as images, including what their
image headers reference) and secured-virt's own metadata on a domain (its owner and sHype
label, read from and written to the domain XML), and sVirt made real with libvirt's DAC
driver: each realm's QEMU under its own uid, its images owned by that uid with mode 0600
(``dac``).

May import ``lxml`` and the shared helpers; never a backend, the service, RBAC or sHype code,
so every front-end and backend can ask the same questions the same way.
"""
