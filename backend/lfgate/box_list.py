"""The boxes the gateway serves: the one `.env` describes, then one per section of the BOXES
file, each section's keys laid over `.env`'s. Read once at start-up: a wrong key or value
stops start-up with the file, the box and the key named.

    # boxes.ini                      # BOXES=boxes.ini in .env
    [a100]
    SSH_HOST=gpu-a100
    BASE_MODEL_PATH=/root/models/Qwen2.5-7B-Instruct
    ADAPTER_DIRS=/root/LLaMA-Factory/saves
"""

from __future__ import annotations

import configparser
import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from lfgate.config import Settings, SettingsError, settings_error

# Keys of the gateway itself, not of a box: they cannot be set per box.
GATEWAY_KEYS = frozenset({
    "database_url", "lfgate_data_dir", "max_request_bytes", "max_message_chars",
    "max_new_tokens_limit",
    "gateway_host", "gateway_port", "gateway_allowed_hosts", "gateway_cors_origins",
    "gateway_token",
    "store_api_chats", "boxes", "box_name", "box_status_interval", "loop_watch_ms",
    "trusted_proxies", "max_connections", "header_timeout_s", "body_timeout_s"})
BOX_KEYS = frozenset(Settings.model_fields) - GATEWAY_KEYS
BOX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
ID_SEPARATOR = ":"  # a model of box `a100` is `a100:<its id on that box>`


@dataclass(frozen=True)
class BoxDefinition:
    name: str
    settings: Settings
    primary: bool  # the .env's own box: its model ids carry no box name

    @property
    def id_prefix(self) -> str:
        return "" if self.primary else f"{self.name}{ID_SEPARATOR}"


def _section_settings(base: Settings, name: str, section: dict[str, str], where: str
                      ) -> Settings:
    for key in section:
        if key.lower() in BOX_KEYS:
            continue
        if key.lower() in GATEWAY_KEYS:
            raise SettingsError(f"invalid configuration: {where}: {key.upper()} is a setting "
                                "of the gateway, not of a box: set it in .env")
        close = difflib.get_close_matches(key.upper(), sorted(k.upper() for k in BOX_KEYS), 1,
                                          0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise SettingsError(f"invalid configuration: {where}: {key} is not a box key{hint}")
    values = {**base.model_dump(), **{k.lower(): v for k, v in section.items()},
              "boxes": "", "box_name": name}
    try:
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise settings_error(exc, f"{where}: ", file=where) from None
    settings._warnings = [f"{where}: {w}" for w in settings.engine_warnings()]
    return settings


def box_definitions(settings: Settings) -> list[BoxDefinition]:
    """The .env's box first, then the BOXES file's in its order."""
    boxes = [BoxDefinition(settings.box_name, settings, True)]
    if not settings.boxes:
        return boxes
    path = Path(settings.boxes).expanduser()
    parser = configparser.ConfigParser(interpolation=None, default_section="\0")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise SettingsError(f"invalid configuration: BOXES: {path}: {exc}") from None
    if not parser.sections():
        raise SettingsError(f"invalid configuration: BOXES: {path} has no [box] section")
    names = {settings.box_name}
    for name in parser.sections():
        where = f"BOXES {path} [{name}]"
        if not BOX_NAME.match(name):
            raise SettingsError(f"invalid configuration: {where}: a box name is 1-40 letters, "
                                "digits, '.', '_' or '-', starting with a letter or digit")
        if name in names:
            raise SettingsError(f"invalid configuration: {where}: the name {name!r} is taken "
                                "(BOX_NAME names the .env's own box)")
        names.add(name)
        boxes.append(BoxDefinition(name, _section_settings(settings, name,
                                                           dict(parser[name]), where), False))
    return boxes
