"""`lfgate`: the one console command. `lfgate serve` runs the gateway, `lfgate doctor` checks
the way to the box."""

from __future__ import annotations

import argparse
import sys

from lfgate import __version__
from lfgate.config import SettingsError, load_settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from lfgate.app import create_app

    overrides = {k: v for k, v in {"gateway_host": args.host, "gateway_port": args.port}.items()
                 if v is not None}
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"lfgate: {exc}", file=sys.stderr)
        return 2
    for warning in settings.warnings:
        print(f"lfgate: warning: {warning}", file=sys.stderr)
    where = "this machine" if settings.is_local else settings.host_label
    print(f"lfgate: {settings.chat_mode} mode, box: {where}, model: {settings.base_model_path}"
          + (f" + {settings.adapter_path}" if settings.adapter_path else ""), file=sys.stderr)
    if settings.adapter_dir_list:
        print(f"lfgate: runs and checkpoints under {', '.join(settings.adapter_dir_list)}",
              file=sys.stderr)
    print(f"lfgate: open http://{settings.gateway_host}:{settings.gateway_port}/",
          file=sys.stderr)
    uvicorn.run(create_app(settings), host=settings.gateway_host, port=settings.gateway_port,
                log_level=args.log_level, timeout_graceful_shutdown=5)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from lfgate.config import ENV_FILE
    from lfgate.services.doctor_run import doctor_from_env

    return asyncio.run(doctor_from_env(env_path=Path(ENV_FILE).resolve(), as_json=args.json,
                                       out=sys.stdout))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lfgate", description="LF Gate: chat with "
                                     "LlamaFactory models on a GPU box over SSH.")
    parser.add_argument("--version", action="version", version=f"lfgate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway (settings from ./.env)")
    serve.add_argument("--host", help="listen address (default: GATEWAY_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: GATEWAY_PORT, 8000)")
    serve.add_argument("--log-level", default="info",
                       choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(run=_serve)
    doctor = commands.add_parser("doctor", help="check the .env, SSH, the box, LlamaFactory, "
                                 "the models and a smoke chat, each failure with its fix")
    doctor.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    doctor.set_defaults(run=_doctor)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
