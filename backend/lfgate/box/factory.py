"""Pick the box for the settings: this machine when SSH_HOST is empty, else SSH."""

from __future__ import annotations

from lfgate.box.box import Box
from lfgate.box.local_box import LocalBox
from lfgate.box.ssh_box import SSHBox
from lfgate.config import Settings


def open_box(settings: Settings) -> Box:
    return LocalBox(settings) if settings.is_local else SSHBox(settings)
