"""The gateway's settings: one object, read from the environment and `.env` in the current
directory, checked once at start-up so a wrong value stops the gateway with a clear line."""

from __future__ import annotations

import difflib
import ipaddress
import json
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_FILE = ".env"  # read from the current directory, as users run `lfgate serve` there
# Per INFER_BACKEND, the settings that are LlamaFactory 0.9.5's own engine arguments of the
# same name (hparams/model_args.py: VllmArguments, SGLangArguments). 0.9.5 also parses
# `sglang_config` but its SGLang engine never reads it, so it is not offered.
ENGINE_ARGS: dict[str, tuple[str, ...]] = {
    "huggingface": (),
    "vllm": ("vllm_maxlen", "vllm_gpu_util", "vllm_enforce_eager", "vllm_max_lora_rank",
             "vllm_config"),
    "sglang": ("sglang_maxlen", "sglang_mem_fraction", "sglang_tp_size", "sglang_lora_backend"),
}
JSON_ENGINE_ARGS = ("vllm_config",)  # a JSON object in .env, sent as an object
# The most MAX_MESSAGE_CHARS (characters) and MAX_NEW_TOKENS_LIMIT (tokens) can be set to.
MESSAGE_CHARS_CEILING = 10_000_000
NEW_TOKENS_CEILING = 1_000_000


def parse_json_object(text: str) -> dict[str, Any]:
    """A JSON object typed into .env, or a ValueError saying what is wrong with it."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno}); write one JSON "
                         """object, e.g. {"max_loras": 4}""") from None
    if not isinstance(value, dict):
        raise ValueError(f"must be a JSON object such as {{\"max_loras\": 4}}, not {text[:80]}")
    return value


class Settings(BaseSettings):
    """Every key is documented in .env.example; names match what users already have."""

    model_config = SettingsConfigDict(env_file=ENV_FILE, env_file_encoding="utf-8",
                                      extra="ignore", case_sensitive=False)
    # What is wrong but not fatal (unknown keys in .env), said at start-up and in /api/health.
    _warnings: list[str] = PrivateAttr(default_factory=list)

    # How the box runs the model.
    chat_mode: Literal["cli", "script"] = "script"
    chat_script_path: str = ""
    remote_work_dir: str = ""
    remote_python: str = ""
    conda_env: str = ""
    llamafactory_cli_path: str = ""
    chat_timeout: float = Field(default=600.0, gt=0)

    # The box this .env describes, by name (pages, status, doctor), and more boxes: BOXES is
    # an INI file of one [name] section per box, each with the box keys of .env (BOX_KEYS);
    # what a section leaves out comes from here. Their model ids are `name:id`.
    box_name: str = Field(default="main", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
    boxes: str = ""
    # How often each box's status (round trip, GPUs, load) is read over its open connection,
    # and a box that is down is tried again; 0: never by itself.
    box_status_interval: float = Field(default=5.0, ge=0)

    # Where the box is. Empty SSH_HOST: the box is this machine (a local subprocess).
    ssh_host: str = ""
    ssh_port: int | None = Field(default=None, ge=1, le=65535)
    ssh_user: str = ""
    ssh_key_path: str = ""
    # The box's login password (password and keyboard-interactive auth) and the passphrase of
    # an encrypted SSH_KEY_PATH. Secrets: repr and messages never show them.
    ssh_password: SecretStr = SecretStr("")
    ssh_key_passphrase: SecretStr = SecretStr("")
    ssh_known_hosts: str = ""
    ssh_config_path: str = ""
    ssh_keepalive_interval: float = Field(default=10.0, gt=0)
    ssh_keepalive_count_max: int = Field(default=3, ge=1)
    ssh_connect_timeout: float = Field(default=20.0, gt=0)
    ssh_max_channels: int = Field(default=8, ge=1, le=64)

    # What the box serves.
    base_model_path: str = ""
    adapter_path: str = ""
    template: str = "default"
    finetuning_type: str = "lora"
    infer_backend: Literal["huggingface", "vllm", "sglang"] = "huggingface"
    # LlamaFactory's own engine arguments for INFER_BACKEND=vllm / sglang (multi-GPU serving
    # and memory), named as LlamaFactory 0.9.5 names them; empty: LlamaFactory's default (not
    # sent). Only the selected engine's are sent (ENGINE_ARGS, Settings.engine_args).
    vllm_maxlen: int | None = Field(default=None, ge=1)
    vllm_gpu_util: float | None = Field(default=None, gt=0, le=1)
    vllm_enforce_eager: bool | None = None
    vllm_max_lora_rank: int | None = Field(default=None, ge=1)
    vllm_config: str = ""  # a JSON object, merged into vLLM's engine arguments
    sglang_maxlen: int | None = Field(default=None, ge=1)
    sglang_mem_fraction: float | None = Field(default=None, gt=0, le=1)
    sglang_tp_size: int | None = Field(default=None, ge=1)
    sglang_lora_backend: Literal["triton", "flashinfer"] | None = None
    # Training folders on the box (LlamaFactory's saves/), comma-separated: every run and
    # checkpoint under them is a model. Rescanned every RESCAN_INTERVAL seconds (0: never by
    # itself; the picker and POST /api/models/refresh still rescan).
    adapter_dirs: str = ""
    rescan_interval: float = Field(default=60.0, ge=0)
    # Adapters kept on a loaded base (script mode), least recently used put away first.
    max_loaded_adapters: int = Field(default=4, ge=1, le=256)
    # CLI mode: llamafactory-cli processes at once (each holds one model's weights).
    max_cli_sessions: int = Field(default=2, ge=1, le=16)

    # Where conversations are kept. Empty DATABASE_URL: SQLite in LFGATE_DATA_DIR.
    database_url: str = ""
    lfgate_data_dir: str = "~/.local/share/lfgate"

    # Largest request body accepted (413 above it).
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Longest message or system prompt accepted (page, compare, prompt sets, /v1), in
    # characters, and the most new tokens a request may ask for; above either, the request is
    # refused naming the field and the setting. The whole gateway's, not a box's.
    max_message_chars: int = Field(default=1_000_000, ge=1, le=MESSAGE_CHARS_CEILING)
    max_new_tokens_limit: int = Field(default=1_000_000, ge=1, le=NEW_TOKENS_CEILING)

    # Replies being generated or queued at once on a box (each BOXES section may set its
    # own), over all its models; more get a 429 at once, with Retry-After.
    max_concurrent_turns: int = Field(default=64, ge=1, le=4096)

    # Where the gateway listens.
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8000, ge=1, le=65535)

    # With GATEWAY_TOKEN set, every /api and /v1 request must send it (`Authorization:
    # Bearer`, or the page's login cookie: lfgate.api.auth); without it the gateway listens
    # on loopback only (check_listen_address). STORE_API_CHATS keeps /v1 conversations.
    gateway_token: SecretStr = SecretStr("")
    store_api_chats: bool = False

    @field_validator("chat_mode", "infer_backend", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("ssh_port", mode="before")
    @classmethod
    def _empty_port(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator(*(name for names in ENGINE_ARGS.values() for name in names
                       if name not in JSON_ENGINE_ARGS), mode="before")
    @classmethod
    def _empty_engine_arg(cls, value: object) -> object:
        """`VLLM_MAXLEN=` in .env is LlamaFactory's default, not a bad number."""
        return (value.strip().lower() or None) if isinstance(value, str) else value

    @field_validator(*JSON_ENGINE_ARGS)
    @classmethod
    def _json_object(cls, value: str) -> str:
        value = value.strip()
        if value:
            parse_json_object(value)
        return value

    @model_validator(mode="after")
    def _need_a_model(self) -> Settings:
        if not self.base_model_path.strip():
            raise ValueError("BASE_MODEL_PATH is required: the model directory on the box")
        if self.database_url and not self.database_url.startswith(
                ("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("DATABASE_URL must start with sqlite+aiosqlite:// or "
                             "postgresql+asyncpg://")
        for name in ("ssh_key_path", "ssh_known_hosts", "ssh_config_path", "boxes"):
            value = getattr(self, name)
            if value and not Path(value).expanduser().is_file():
                raise ValueError(f"{name.upper()}: no such file: {value}")
        return self

    @model_validator(mode="after")
    def _one_adapter_per_engine(self) -> Settings:
        """LlamaFactory 0.9.5 gives vLLM and SGLang one adapter (adapter_name_or_path[0]):
        with several (split at commas), vLLM refuses to load and SGLang silently serves
        only the first."""
        if self.infer_backend != "huggingface" and "," in self.adapter_path:
            raise ValueError(f"ADAPTER_PATH: INFER_BACKEND={self.infer_backend} takes one "
                             "adapter (LlamaFactory gives that engine only the first); merge "
                             "them first (llamafactory-cli export) or use INFER_BACKEND="
                             "huggingface")
        return self

    @property
    def warnings(self) -> list[str]:
        return list(self._warnings)

    def engine_args(self) -> dict[str, Any]:
        """INFER_BACKEND's engine settings as LlamaFactory arguments (a model's `extra_args`):
        only those set, so an empty key keeps LlamaFactory's default."""
        args: dict[str, Any] = {}
        for name in ENGINE_ARGS[self.infer_backend]:
            value = getattr(self, name)
            if value is None or value == "":
                continue
            args[name] = parse_json_object(value) if name in JSON_ENGINE_ARGS else value
        return args

    def engine_warnings(self) -> list[str]:
        """Engine settings that do nothing: another engine's keys are never sent."""
        return [f"{name.upper()} is set but INFER_BACKEND={self.infer_backend}: it is not sent "
                f"(it is for INFER_BACKEND={backend})"
                for backend, names in ENGINE_ARGS.items() if backend != self.infer_backend
                for name in names if getattr(self, name) not in (None, "")]

    @property
    def adapter_dir_list(self) -> list[str]:
        return [part.strip() for part in self.adapter_dirs.split(",") if part.strip()]

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{Path(self.lfgate_data_dir).expanduser() / 'lfgate.db'}"

    @property
    def is_local(self) -> bool:
        return not self.ssh_host.strip()

    @property
    def host_label(self) -> str:
        """The box as users name it, without secrets."""
        if self.is_local:
            return "local"
        user = f"{self.ssh_user}@" if self.ssh_user else ""
        port = f":{self.ssh_port}" if self.ssh_port else ""
        return f"{user}{self.ssh_host}{port}"


class SettingsError(Exception):
    """Start-up configuration is wrong; the message names the key."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: reachable from this machine only."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_listen_address(settings: Settings) -> None:
    """Refuse to listen beyond this machine without GATEWAY_TOKEN: whoever could reach the
    port could use the box (and read every chat)."""
    if settings.gateway_token.get_secret_value() or is_loopback(settings.gateway_host):
        return
    raise SettingsError(f"GATEWAY_HOST={settings.gateway_host} is not a loopback address and "
                        "GATEWAY_TOKEN is empty: anyone on the network could use the box and "
                        "read every chat; set GATEWAY_TOKEN to a long random string, or listen "
                        "on 127.0.0.1")


def unknown_keys(path: Path) -> list[str]:
    """One warning per key of a .env file that is no setting, naming the closest one: a typo
    such as SSH_HOTS would otherwise be ignored without a word (and the box be this machine)."""
    if not path.is_file():
        return []
    known = sorted(name.upper() for name in Settings.model_fields)
    warnings = []
    for key in dotenv_values(path):
        if key.upper() in known:
            continue
        close = difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else " (see .env.example for the keys)"
        warnings.append(f"{key} in {path} is not a setting{hint}")
    return warnings


def load_settings(**overrides: object) -> Settings:
    """The settings from the environment and ./.env, with `overrides` winning."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        key = "_".join(str(part) for part in first["loc"]).upper()
        message = first["msg"].removeprefix("Value error, ")
        where = f"{key}: " if key else ""
        raise SettingsError(f"invalid configuration: {where}{message}") from None
    settings._warnings = [*unknown_keys(Path(ENV_FILE)), *settings.engine_warnings()]
    return settings
