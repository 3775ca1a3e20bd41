"""Which operations the ACM mediates (kept apart so the service imports no policy code when
sHype/ACM is off)."""

#: operations that bring a domain into existence on this host: the Chinese Wall create hook
INSTANTIATING = frozenset({"start", "create", "restore", "snapshot-revert"})
