"""The gateway's settings: one object, read from the environment and `.env` in the current
directory (or the file `--env-file` names), checked once at start-up so a wrong value stops
the gateway with a clear line."""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

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
    "huggingface": ("cutoff_len",),
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


class SettingProblem(ValueError):
    """A check of one or several keys in a model validator: pydantic keeps the exception, so
    its `fix` reaches SettingsError (and the doctor) rather than a generic "fix that key"."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


class Settings(BaseSettings):
    """Every key is documented in .env.example; names match what users already have."""

    model_config = SettingsConfigDict(env_file=ENV_FILE, env_file_encoding="utf-8",
                                      extra="ignore", case_sensitive=False)
    # What is wrong but not fatal (unknown keys in .env), said at start-up and in /api/health.
    _warnings: list[str] = PrivateAttr(default_factory=list)
    # The .env these settings were read from (`--env-file`, else ./.env): the doctor reports
    # on that file, whichever it was.
    _env_path: Path = PrivateAttr(default_factory=lambda: Path(ENV_FILE).resolve())

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
    box_name: str = Field(default="main", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$",
                          description="1-40 letters, digits, '.', '_' or '-', starting with a "
                          "letter or digit")
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
    # huggingface: the context window in tokens (LlamaFactory's cutoff_len); empty: the
    # model's max_position_embeddings. A longer prompt is refused (context_length_exceeded).
    cutoff_len: int | None = Field(default=None, ge=1)
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
    # Script mode (Hugging Face engine): chats generated together on one loaded base (issue
    # 26); more wait in line on the box until a row ends. Each row holds its own KV cache.
    max_batch_rows: int = Field(default=16, ge=1, le=256)
    # CLI mode: llamafactory-cli processes at once (each holds one model's weights).
    max_cli_sessions: int = Field(default=2, ge=1, le=16)

    # Where conversations are kept. Empty DATABASE_URL: SQLite in LFGATE_DATA_DIR.
    database_url: str = ""
    lfgate_data_dir: str = "~/.local/share/lfgate"

    # Largest request body accepted (413 above it) on a route behind the token; the login and
    # the page's files take 8 KiB (lfgate.api.guards.body_limit).
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # What one client may hold (lfgate.connection_limits): connections open at once (more are
    # answered 503 and closed; lowered to fit ulimit -n), seconds to send a request's head
    # (408 or a close after), and seconds a body may stall (the login's whole body: 408).
    max_connections: int = Field(default=256, ge=1, le=100_000)
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
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
    # Host names the gateway answers to besides loopback names, IP addresses and
    # GATEWAY_HOST (comma-separated; `*`: any). Others are refused: DNS rebinding
    # (lfgate.api.guards.origin).
    gateway_allowed_hosts: str = ""
    # Web origins whose pages may call /v1 from the browser (CORS; comma-separated, exact,
    # e.g. http://localhost:3000; `*`: any, only with GATEWAY_TOKEN). None by default: a
    # page on another origin is refused (lfgate.api.guards.origin, lfgate.api.guards.cors).
    gateway_cors_origins: str = ""

    # Addresses of the reverse proxy in front (comma-separated; uvicorn's forwarded_allow_ips):
    # only their X-Forwarded-For / -Proto are believed. Empty: none, not even 127.0.0.1.
    trusted_proxies: str = ""

    # Log any callback that holds the event loop longer than this (CPU time), and task
    # exceptions never read (lfgate.loop_watch); 0: off. The tests run every gateway at 100.
    loop_watch_ms: int = Field(default=0, ge=0, le=60_000)

    # With GATEWAY_TOKEN set, every /api and /v1 request must send it (`Authorization:
    # Bearer`, or the page's login cookie: lfgate.api.guards.auth); without it the gateway listens
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
            raise SettingProblem("BASE_MODEL_PATH is required: the model directory on the box",
                                 "Set BASE_MODEL_PATH to the model folder on the box (the one "
                                 "with config.json), as an absolute path.")
        if self.database_url and not self.database_url.startswith(
                ("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            scheme = urlsplit(self.database_url).scheme or self.database_url[:20]
            raise SettingProblem("DATABASE_URL must start with sqlite+aiosqlite:// or "
                                 f"postgresql+asyncpg:// (it starts with {scheme}:)",
                                 "Set DATABASE_URL=postgresql+asyncpg://USER:PASSWORD@HOST/DB "
                                 "or sqlite+aiosqlite:///PATH, or leave it empty (SQLite in "
                                 "LFGATE_DATA_DIR).")
        for name in ("ssh_key_path", "ssh_known_hosts", "ssh_config_path", "boxes"):
            value = getattr(self, name)
            if value and not Path(value).expanduser().is_file():
                raise SettingProblem(f"{name.upper()}: no such file: {value}",
                                     f"Point {name.upper()} at a file that exists, or leave "
                                     "it empty.")
        return self

    @model_validator(mode="after")
    def _one_adapter_per_engine(self) -> Settings:
        """LlamaFactory 0.9.5 gives vLLM and SGLang one adapter (adapter_name_or_path[0]):
        with several (split at commas), vLLM refuses to load and SGLang silently serves
        only the first."""
        if self.infer_backend != "huggingface" and "," in self.adapter_path:
            raise SettingProblem(f"ADAPTER_PATH: INFER_BACKEND={self.infer_backend} takes "
                                 "one adapter (LlamaFactory gives that engine only the first); "
                                 "merge them first (llamafactory-cli export) or use "
                                 "INFER_BACKEND=huggingface",
                                 "Give ADAPTER_PATH one adapter (merge the others with "
                                 "`llamafactory-cli export`), or set INFER_BACKEND=huggingface.")
        return self

    @property
    def warnings(self) -> list[str]:
        return list(self._warnings)

    @property
    def env_path(self) -> Path:
        """The .env file read (absolute; it may not exist: then only the environment)."""
        return self._env_path

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
    def chats_location(self) -> str:
        """Where conversations are kept, as start-up says it: the SQLite file, or the
        PostgreSQL database by host and name (never its user or password)."""
        url = self.effective_database_url
        if url.startswith("sqlite+aiosqlite:///"):
            return url.removeprefix("sqlite+aiosqlite:///")
        parts = urlsplit(url)
        return (f"PostgreSQL database {parts.path.lstrip('/') or '(default)'} on "
                f"{parts.hostname or 'localhost'}:{parts.port or 5432}")

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
    """Start-up configuration is wrong: the message names the key (and the value given), `fix`
    says what to write instead (the doctor shows it as the fix, `lfgate serve` after it)."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def line(self) -> str:
        """The message and its fix as one line, for a terminal."""
        return f"{self.message}; fix: {self.fix}" if self.fix else self.message


_KINDS: dict[Any, str] = {int: "a whole number", float: "a number", bool: "true or false"}


def _number(value: object) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


_BOUND_WORDS = {"ge": "of {} or more", "gt": "above {}", "le": "at most {}", "lt": "below {}"}


def _bounds(metadata: list[Any]) -> str:
    """A field's ge/gt/le/lt constraints in words: " from 1 to 65535", " above 0, at most 1"."""
    limits = {name: _number(getattr(item, name)) for item in metadata
              for name in _BOUND_WORDS if getattr(item, name, None) is not None}
    if "ge" in limits and "le" in limits:
        return f" from {limits['ge']} to {limits['le']}"
    words = [_BOUND_WORDS[name].format(value) for name, value in limits.items()]
    return f" {', '.join(words)}" if words else ""


def allowed_values(name: str) -> str:
    """What a key takes, as one writes it in .env ("cli or script", "a whole number from 1 to
    65535"), read from the field itself: its Literal, its type and bounds, or its
    description. Empty for free text, whose own check says what is wrong."""
    field = Settings.model_fields.get(name)
    if field is None:
        return ""
    if field.description:
        return field.description
    options = (get_args(field.annotation) if get_origin(field.annotation) in (Union, UnionType)
               else (field.annotation,))
    optional = type(None) in options
    kinds = [kind for kind in options if kind is not type(None)]
    if len(kinds) != 1:
        return ""
    kind = kinds[0]
    if get_origin(kind) is Literal:
        choices = [str(choice) for choice in get_args(kind)]
        words = " or ".join([", ".join(choices[:-1]), choices[-1]] if len(choices) > 1
                            else choices)
    elif kind in _KINDS:
        words = _KINDS[kind] + ("" if kind is bool else _bounds(field.metadata))
    else:
        return ""
    return f"{words}, or empty" if optional else words


def _given(name: str, value: object) -> str:
    """The value a key was given, as shown back: never a secret's, at most 60 characters."""
    field = Settings.model_fields.get(name)
    if field is not None and field.annotation is SecretStr:
        return "(hidden)"
    text = str(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def settings_error(exc: ValidationError, where: str = "", file: str = ".env") -> SettingsError:
    """pydantic's first complaint as one line that names the key, the value given and the
    values allowed, with the fix: everywhere settings are validated (.env, a BOXES section;
    `where` prefixes the key, `file` is where the fix goes), a bad value is told alike."""
    first = exc.errors(include_url=False)[0]
    key = "_".join(str(part) for part in first["loc"]).upper()
    message = first["msg"].removeprefix("Value error, ")
    if not key:  # a check of several keys (a model validator): its message names them
        cause = (first.get("ctx") or {}).get("error")
        return SettingsError(f"invalid configuration: {where}{message}",
                             getattr(cause, "fix", ""))
    name = key.lower()
    allowed = allowed_values(name)
    said = f"{message}; given: {key}={_given(name, first.get('input', ''))}"
    if allowed and first["type"] != "literal_error":  # a Literal's message lists them already
        said += f"; allowed: {allowed}"
    default = Settings.model_fields[name].default if name in Settings.model_fields else None
    fix = (f"Set {key} in {file} to {allowed.removesuffix(', or empty')}" if allowed
           else f"Correct {key} in {file}") + ", or remove it" + (
        f" for the default ({_number(default)})" if default not in (None, "")
        and not isinstance(default, SecretStr) else "") + "."
    return SettingsError(f"invalid configuration: {where}{key}: {said}", fix)


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


def cors_origins(settings: Settings) -> list[str]:
    """GATEWAY_CORS_ORIGINS as a list of origins; SettingsError for one that is no origin
    (scheme://host[:port], nothing after) or `*` without GATEWAY_TOKEN (any web page the
    user opens could then use the box and read every answer)."""
    origins = [o.strip().rstrip("/") for o in settings.gateway_cors_origins.split(",")
               if o.strip()]
    for origin in origins:
        if origin == "*":
            if not settings.gateway_token.get_secret_value():
                raise SettingsError("GATEWAY_CORS_ORIGINS=* needs GATEWAY_TOKEN: without it "
                                    "any web page you open could use the box; name the "
                                    "origins (http://localhost:3000), or set a token")
            continue
        scheme, _, rest = origin.partition("://")
        if scheme not in ("http", "https") or not rest or "/" in rest:
            raise SettingsError(f"GATEWAY_CORS_ORIGINS: {origin!r} is not an origin: "
                                "scheme://host[:port], such as http://localhost:3000")
    return origins


def closest_setting(key: str) -> str | None:
    """The setting a key that is none was most likely meant to be (SSH_HOTS: SSH_HOST)."""
    known = sorted(name.upper() for name in Settings.model_fields)
    close = difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_keys(path: Path) -> list[str]:
    """One warning per key of a .env file that is no setting, naming the closest one: a typo
    such as TEMPLTE would otherwise be ignored without a word."""
    if not path.is_file():
        return []
    warnings = []
    for key in dotenv_values(path):
        if key.lower() in Settings.model_fields:
            continue
        close = closest_setting(key)
        hint = f"; did you mean {close}?" if close else " (see .env.example for the keys)"
        warnings.append(f"{key} in {path} is not a setting{hint}")
    return warnings


def _is_default(name: str, value: str) -> bool:
    """A .env value that changes nothing: .env.example's SSH_CONNECT_TIMEOUT=20 is no sign
    that a remote box was meant."""
    default = Settings.model_fields[name].default
    if isinstance(default, SecretStr):
        default = default.get_secret_value()
    if default in (None, ""):
        return False
    try:
        return float(value) == float(default)
    except (TypeError, ValueError):
        return value == str(default)


def _ssh_key_meant(key: str, value: str) -> bool:
    """A key of .env, set, that only means something for a box reached over SSH: an SSH_*
    setting not at its default, or a key that is no setting but looks like an SSH_* one."""
    if not value or key == "SSH_HOST":
        return False
    if key.lower() in Settings.model_fields:
        return key.startswith("SSH_") and not _is_default(key.lower(), value)
    return key.startswith("SSH_") or (closest_setting(key) or "").startswith("SSH_")


def box_keys_without_host(path: Path, ssh_host: str | None = None) -> SettingsError | None:
    """SSH_* keys set in .env while SSH_HOST is empty: the box would be this machine without a
    word, and health say "ok" (a typo such as SSH_HSOT=1.2.3.4 did exactly that). `ssh_host`:
    the SSH_HOST in force (None: read it from the environment, then the file). A .env without
    SSH keys (the local demo, a gateway on the GPU box itself) is fine."""
    if not path.is_file():
        return None
    values = {key.upper(): (value or "").strip() for key, value in dotenv_values(path).items()}
    if ssh_host is None:
        ssh_host = next((value for key, value in os.environ.items() if key.upper() == "SSH_HOST"),
                        values.get("SSH_HOST", ""))
    if ssh_host.strip():
        return None
    meant = [key for key, value in values.items() if _ssh_key_meant(key, value)]
    if not meant:
        return None
    typos = [(key, closest_setting(key)) for key in meant
             if key.lower() not in Settings.model_fields]
    why = "; ".join(f"{key} is not a setting" + (f": did you mean {close}?" if close else "")
                    for key, close in typos)
    if values.get("SSH_HOST"):
        why = (why + "; " if why else "") + (f"the environment's empty SSH_HOST wins over "
                                             f"SSH_HOST={values['SSH_HOST']} in the file")
    fix = (f"Rename {typos[0][0]} to {typos[0][1]} in {path.name}" if typos and typos[0][1]
           else "Unset the environment's SSH_HOST (`unset SSH_HOST`)" if values.get("SSH_HOST")
           else f"Set SSH_HOST in {path.name} to the box (a host, an address or a Host alias "
                "of ~/.ssh/config)") + (", or remove the SSH_ keys to serve from this machine.")
    return SettingsError(f"invalid configuration: SSH_HOST is empty while {', '.join(meant)} "
                         f"{'is' if len(meant) == 1 else 'are'} set in {path}, so the box "
                         "would be this machine" + (f": {why}" if why else ""), fix)


def load_settings(env_file: Path | None = None, **overrides: object) -> Settings:
    """The settings from the environment and `env_file` (default ./.env; the environment wins
    over the file), with `overrides` winning over both."""
    path = Path(ENV_FILE) if env_file is None else env_file
    try:
        settings = Settings(_env_file=path, **overrides)  # type: ignore[arg-type,call-arg]
    except ValidationError as exc:
        raise settings_error(exc, file=path.name) from None
    if (problem := box_keys_without_host(path, settings.ssh_host)) is not None:
        raise problem
    settings._warnings = [*unknown_keys(path), *settings.engine_warnings()]
    settings._env_path = path.resolve()
    return settings
