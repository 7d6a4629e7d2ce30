"""`lfgate`: the one console command, an argument parser that hands each subcommand to its
code. `lfgate serve` runs the gateway and `lfgate doctor` checks the way to the box (both read
the settings); `lfgate models` and `lfgate chat` talk to a running gateway over its HTTP API
(lfgate.commands)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lfgate import __version__
from lfgate.box_list import box_definitions
from lfgate.config import (
    ENV_FILE,
    SettingsError,
    check_listen_address,
    cors_origins,
    load_settings,
)
from lfgate.remote.wrapper_protocol import PROTOCOL_VERSION, WRAPPER_VERSION

if TYPE_CHECKING:
    from lfgate.commands.gateway_client import GatewayClient

# Two numbers, two programs: the gateway (this package) and the wrapper it uploads to the box
# and names in the page's box details and each reply's provenance ("Box wrapper").
VERSION = (f"lfgate {__version__} (gateway), box wrapper {WRAPPER_VERSION} "
           f"(protocol {PROTOCOL_VERSION})")


def _serve(args: argparse.Namespace) -> int:
    """Check the settings, take the port, say what is served and where chats are kept, then
    serve until stopped. A wrong setting is one line and exit status 2, a port that is taken
    one line and 1: never a traceback, and no URL printed for a gateway that will not run."""
    from lfgate.app import create_app
    from lfgate.services.listen_port import CannotListen, listen_socket
    from lfgate.serving import serve
    from lfgate.storage.database import sqlite_file
    from lfgate.storage.sqlite_lock import DatabaseInUse, check_free

    overrides = {k: v for k, v in {"gateway_host": args.host, "gateway_port": args.port}.items()
                 if v is not None}
    try:
        settings = load_settings(env_file=args.env_file, **overrides)
        check_listen_address(settings)  # not beyond loopback without GATEWAY_TOKEN
        cors_origins(settings)  # GATEWAY_CORS_ORIGINS: origins, `*` only with a token
        boxes = box_definitions(settings)
    except SettingsError as exc:
        print(f"lfgate: {exc.line()}", file=sys.stderr)
        return 2
    database = sqlite_file(settings.effective_database_url)
    try:
        if database is not None:
            check_free(database)  # one gateway per SQLite file (said before the port)
    except DatabaseInUse as exc:
        print(f"lfgate: {exc}", file=sys.stderr)
        return 1
    try:
        sock = listen_socket(settings.gateway_host, settings.gateway_port)
    except CannotListen as exc:
        print(f"lfgate: {exc}", file=sys.stderr)
        return 1
    for box in boxes:
        box_settings = box.settings
        for warning in box_settings.warnings:
            print(f"lfgate: warning: {warning}", file=sys.stderr)
        where = "this machine" if box_settings.is_local else box_settings.host_label
        named = f"box {box.name}: " if len(boxes) > 1 else ""
        print(f"lfgate: {named}{box_settings.chat_mode} mode, box: {where}, model: "
              f"{box_settings.base_model_path}"
              + (f" + {box_settings.adapter_path}" if box_settings.adapter_path else ""),
              file=sys.stderr)
        if box_settings.adapter_dir_list:
            print(f"lfgate: {named}runs and checkpoints under "
                  f"{', '.join(box_settings.adapter_dir_list)}", file=sys.stderr)
    print(f"lfgate: chats are kept in {settings.chats_location}", file=sys.stderr)
    print(f"lfgate: open http://{settings.gateway_host}:{settings.gateway_port}/",
          file=sys.stderr)
    return serve(create_app(settings), sock, settings.gateway_host, settings.gateway_port,
                 args.log_level, settings.trusted_proxies)


def _doctor(args: argparse.Namespace) -> int:
    import asyncio

    from lfgate.services.boxes.doctor_run import doctor_from_env

    env_path = (args.env_file or Path(ENV_FILE)).resolve()
    return asyncio.run(doctor_from_env(env_path=env_path, as_json=args.json,
                                       out=sys.stdout, box_name=args.box))


def _talk(args: argparse.Namespace, command: Callable[[GatewayClient], int]) -> int:
    """Run a client command against the gateway at --url (default: GATEWAY_HOST and
    GATEWAY_PORT of the settings) with GATEWAY_TOKEN when set; whatever goes wrong is one
    line on stderr and exit status 1 (2 for a bad setting), never a traceback."""
    from lfgate.commands.gateway_client import CommandError, GatewayClient, read_address

    try:
        address = read_address(args.env_file)
        with GatewayClient(args.url or address.url,
                           address.gateway_token.get_secret_value()) as client:
            return command(client)
    except CommandError as exc:
        print(f"lfgate: {exc}", file=sys.stderr)
        return exc.status
    except BrokenPipeError:  # `lfgate models --json | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no error at exit)
        return 1
    except KeyboardInterrupt:  # Ctrl-C outside a reply (a reply's own is a stop): just end
        print(file=sys.stderr)
        return 130


def _models(args: argparse.Namespace) -> int:
    from lfgate.commands.models import list_models

    return _talk(args, lambda client: list_models(client, as_json=args.json, out=sys.stdout))


def _chat(args: argparse.Namespace) -> int:
    from lfgate.commands.chat import chat_command

    return _talk(args, lambda client: chat_command(
        client, model=args.model, prompt=args.prompt, chat_id=args.chat, system=args.system,
        params=dict(args.option or []), stdin=sys.stdin, out=sys.stdout, err=sys.stderr))


def _env_file(value: str) -> Path:
    """--env-file: a file named on the command line must be there; a typo would otherwise
    leave the environment alone to configure everything, without a word."""
    path = Path(value).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {value}")
    return path


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{value!r} is no http:// or https:// URL")
    return value.rstrip("/")


def _option_value(text: str) -> Any:
    """-o's VALUE as JSON where it is (0.2, 512, true), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _add_env_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-file", type=_env_file, metavar="PATH",
                        help=f"read the settings from PATH instead of ./{ENV_FILE} (the "
                        "environment still wins over the file)")


def _add_gateway(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", type=_url, help="the gateway to talk to (default: "
                        "http://GATEWAY_HOST:GATEWAY_PORT from the settings, "
                        "http://127.0.0.1:8000); GATEWAY_TOKEN is sent when set")
    _add_env_file(parser)


EXAMPLES = """examples:
  lfgate serve                          run the gateway with ./.env
  lfgate doctor --env-file a100.env     check another configuration
  lfgate models                         what the running gateway serves
  lfgate chat                           chat with its default model in this terminal
  lfgate chat default "Hi" > reply.txt  one question, one answer, for scripts

`lfgate COMMAND --help` says more about each."""

CHAT_EXAMPLES = """typing:
  Enter sends. A line ending in \\ goes on to the next line; a line starting with \"\"\"
  opens a block that a line ending in \"\"\" closes; a paste of several lines is one message
  (where the terminal marks pastes: bracketed paste, on in GNU readline). Ctrl-C while a
  reply streams stops it on the box (the page's Stop) and the prompt comes back; a second
  Ctrl-C stops waiting for it. Ctrl-D, or Ctrl-C at the prompt, ends the chat.

examples:
  lfgate chat                                    the default model, a new chat
  lfgate chat qwen-7b--lora--sft -s "Be terse."  an adapter, with a system prompt
  lfgate chat --chat 3f2a...                     go on with a chat (one from the page too)
  git diff | lfgate chat default                 the prompt from stdin
  lfgate chat default "Summarise LoRA" -o temperature 0 -o max_new_tokens 200"""

SERVE_EXAMPLES = """examples:
  lfgate serve                                  ./.env's box, at http://127.0.0.1:8000
  lfgate serve --env-file a100.env --port 8001  another configuration, another port"""

DOCTOR_EXAMPLES = """examples:
  lfgate doctor                       every box of ./.env
  lfgate doctor --json --box a100     one box, for scripts"""

MODELS_EXAMPLES = """examples:
  lfgate models
  lfgate models --json | jq -r '.models[].id'
  lfgate models --url http://gpu-gateway:8000"""


class _HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped to the terminal as usual; epilogs (the examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(("examples:", "typing:")):  # as RawDescriptionHelpFormatter does
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def build_parser() -> argparse.ArgumentParser:
    """`lfgate` and its subcommands, every option with its help."""
    described = _HelpFormatter
    parser = argparse.ArgumentParser(
        prog="lfgate", description="LF Gate: chat with LlamaFactory models on a GPU box over "
        "SSH.", epilog=EXAMPLES, formatter_class=described)
    parser.add_argument("--version", action="version", version=VERSION,
                        help="print the gateway's version and the box wrapper's it ships")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the gateway (settings from ./.env)",
                                description="Run the gateway: the page at /, the API at /api "
                                "and /v1, one SSH connection per box.",
                                epilog=SERVE_EXAMPLES, formatter_class=described)
    serve.add_argument("--host", help="listen address (default: GATEWAY_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: GATEWAY_PORT, 8000)")
    serve.add_argument("--log-level", default="info",
                       choices=["critical", "error", "warning", "info", "debug"],
                       help="info (the default): the gateway's lines, and a request's line "
                       "only for a failure, a /v1 call or a change under /api; debug: "
                       "everything, every request included")
    _add_env_file(serve)
    serve.set_defaults(run=_serve)
    doctor = commands.add_parser("doctor", help="check the .env, SSH, the box, LlamaFactory, "
                                 "the models and a smoke chat, each failure with its fix",
                                 description="Check the configuration, SSH, the box, "
                                 "LlamaFactory, the models and a smoke chat; exit status 0 "
                                 "only when nothing failed.",
                                 epilog=DOCTOR_EXAMPLES, formatter_class=described)
    doctor.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    doctor.add_argument("--box", help="check only this box (BOX_NAME or a BOXES section); "
                        "default: every box")
    _add_env_file(doctor)
    doctor.set_defaults(run=_doctor)
    models = commands.add_parser(
        "models", help="list the models of a running gateway",
        description="The models a running gateway serves (GET /api/models): id, box, base or "
        "adapter, status, template, and a checkpoint's step and loss where known; then each "
        "model's warnings and problems.", epilog=MODELS_EXAMPLES, formatter_class=described)
    models.add_argument("--json", action="store_true",
                        help="the gateway's whole answer as JSON, for scripts")
    _add_gateway(models)
    models.set_defaults(run=_models)
    chat = commands.add_parser(
        "chat", help="chat with a model of a running gateway in this terminal",
        description="Chat with a model of a running gateway over its HTTP API, as the page "
        "does: the reply streams as it is written, and the conversation is one stored chat "
        "(in the page's list too). With PROMPT, or a prompt on stdin, it answers once and "
        "exits: the reply alone on stdout.", epilog=CHAT_EXAMPLES, formatter_class=described)
    chat.add_argument("model", nargs="?", metavar="MODEL",
                      help="a model id, as `lfgate models` lists them (default: `default`, "
                      ".env's model; with --chat, that chat's model)")
    chat.add_argument("prompt", nargs="?", metavar="PROMPT",
                      help="ask this once, print the reply and exit (without it, and with "
                      "stdin not a terminal, stdin is the prompt)")
    chat.add_argument("-s", "--system", metavar="TEXT",
                      help="the chat's system prompt (saved on the chat, as the page saves it)")
    chat.add_argument("--chat", metavar="ID",
                      help="go on with this stored chat (its id: in the page's URL, "
                      "#/chat/ID, or printed when a chat here ends)")
    chat.add_argument("-o", "--option", nargs=2, action="append", metavar=("NAME", "VALUE"),
                      type=str, help="a generation setting for every reply: temperature, "
                      "top_p, top_k, max_new_tokens, repetition_penalty, enable_thinking, "
                      "seed (repeat -o for more)")
    _add_gateway(chat)
    chat.set_defaults(run=_chat)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "option", None):
        args.option = [(name, _option_value(value)) for name, value in args.option]
    return args.run(args)

if __name__ == "__main__":
    sys.exit(main())
