"""`lfgate`: the one console command. `lfgate serve` runs the gateway, `lfgate doctor` checks
the way to the box."""

from __future__ import annotations

import argparse
import sys

from lfgate import __version__
from lfgate.box_list import box_definitions
from lfgate.config import SettingsError, check_listen_address, load_settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from lfgate.app import create_app

    overrides = {k: v for k, v in {"gateway_host": args.host, "gateway_port": args.port}.items()
                 if v is not None}
    try:
        settings = load_settings(**overrides)
        check_listen_address(settings)  # not beyond loopback without GATEWAY_TOKEN
        boxes = box_definitions(settings)
    except SettingsError as exc:
        print(f"lfgate: {exc}", file=sys.stderr)
        return 2
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
                                       out=sys.stdout, box_name=args.box))


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
    doctor.add_argument("--box", help="check only this box (BOX_NAME or a BOXES section); "
                        "default: every box")
    doctor.set_defaults(run=_doctor)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
