"""``python -I -m secured_virt.web``: the svirt-web program."""

from secured_virt.web.server import entry

entry()
