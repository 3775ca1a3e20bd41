"""``python -I -m secured_virt.xenapi``: the svirt-xenapi program."""

from secured_virt.xenapi.server import entry

entry()
