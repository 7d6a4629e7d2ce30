"""The doctor's judgments of what the box probe found (remote/box_probe.py): pure functions
from (settings, facts) to findings, each failure with the exact fix. Kept apart from the
running of checks so every judgment is tested on facts alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lfgate.box.errors import BoxError
from lfgate.config import Settings
from lfgate.services.boxes.findings import Finding
from lfgate.services.models.catalog import CONFIGURED_ID, Catalog, same_path

LOW_DISK_BYTES = 2 * 1024**3
GIB = 1024**3
_SHOWN = 5  # adapters named one by one; the rest counted


def _size(value: float) -> str:
    """Bytes as people read them: GiB for models and disks, MiB or KiB for tiny ones."""
    for unit, scale in (("GiB", GIB), ("MiB", 1024**2)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value / 1024:.0f} KiB"


def judge_shell(settings: Settings, facts: dict[str, Any],
                conda_error: BoxError | None) -> Iterator[Finding]:
    section = "Remote shell"
    python = facts["python"]
    yield Finding(section, "python", "pass",
                   f"{settings.remote_python or 'python3'} is {python['executable']} "
                   f"(Python {python['version']})")
    if settings.conda_env:
        if conda_error is not None:
            yield Finding(section, "conda", "fail", conda_error.message, conda_error.hint)
        else:
            yield Finding(section, "conda", "pass", f"CONDA_ENV={settings.conda_env} "
                           f"activates ({facts.get('conda_prefix')})")
    login = facts.get("interactive") or {}
    here = [p for p in (facts.get("path") or "").split(":") if p]
    there = [p for p in (login.get("path") or "").split(":") if p]
    extra = [p for p in there if p not in here]
    if login.get("path") is None:
        yield Finding(section, "PATH", "warn", "could not read an interactive login's PATH "
                       f"({login.get('error') or 'no answer'}); the non-interactive one has "
                       f"{len(here)} folders")
    elif extra:
        yield Finding(section, "PATH", "warn", "an interactive login adds "
                       f"{', '.join(extra)} to the PATH, which `ssh box command` (and so "
                       "the wrapper) does not see", "Nothing to do if the checks below pass; "
                       "otherwise use full paths (REMOTE_PYTHON, LLAMAFACTORY_CLI_PATH) or "
                       "CONDA_ENV rather than relying on ~/.bashrc.")
    else:
        yield Finding(section, "PATH", "pass", "the same for `ssh box command` as for an "
                       "interactive login")
    work = facts.get("work_dir")
    if settings.remote_work_dir and work is not None:
        where = settings.remote_work_dir
        if not work["exists"]:
            yield Finding(section, "work dir", "fail", f"REMOTE_WORK_DIR {where} does not "
                           "exist on the box", f"Create it (`mkdir -p {where}` on the box) or "
                           "set REMOTE_WORK_DIR to a folder that exists (empty: the home).")
        elif not work.get("writable"):
            yield Finding(section, "work dir", "fail", f"REMOTE_WORK_DIR {where} is not "
                           "writable by the SSH user", f"Give the user the folder (`sudo "
                           f"chown -R $USER {where}`) or choose one of its own.")
        else:
            yield Finding(section, "work dir", "pass", f"{where} exists and is writable")
    disk = work if work and work.get("free_bytes") is not None else facts.get("cwd") or {}
    if disk.get("free_bytes") is not None:
        low = disk["free_bytes"] < LOW_DISK_BYTES
        yield Finding(section, "disk", "warn" if low else "pass",
                       f"{_size(disk['free_bytes'])} free of {_size(disk['total_bytes'])} in "
                       f"{disk['path']}", "Free some space: checkpoints and caches fill rented "
                       "disks fast." if low else "")


NEEDED = {"cli": ("pexpect",), "script": ("llamafactory",)}  # what each mode imports


def _judge_cli(settings: Settings, facts: dict[str, Any]) -> Iterator[Finding]:
    """CLI mode: where the wrapper will find llamafactory-cli (no import needed to tell)."""
    section = "LlamaFactory"
    cli = facts.get("cli") or {}
    if settings.chat_mode != "cli":
        return
    if cli.get("here"):
        yield Finding(section, "llamafactory-cli", "pass", f"found at {cli['here']}")
    elif cli.get("interactive"):
        yield Finding(section, "llamafactory-cli", "fail",
                      f"{cli['name']} is found by an interactive login "
                      f"({cli['interactive']}) but not on the PATH of `ssh box command`, "
                      "which the wrapper uses",
                      f"Set LLAMAFACTORY_CLI_PATH={cli['interactive']} in .env (or "
                      "CONDA_ENV to the environment that has it).")
    else:
        yield Finding(section, "llamafactory-cli", "fail", f"{cli.get('name')} is not "
                      "found on the box", "Install LlamaFactory in the box's Python "
                      "(`pip install llamafactory`), or set LLAMAFACTORY_CLI_PATH or "
                      "CONDA_ENV to where it is.")


def judge_installed(settings: Settings, facts: dict[str, Any]) -> Iterator[Finding]:
    """The quick form of judge_stack, for start-up: the packages the mode needs are there
    (found by the probe without importing them), and llamafactory-cli in CLI mode."""
    section = "LlamaFactory"
    yield from _judge_cli(settings, facts)
    found = facts.get("installed") or {}
    python = (facts.get("python") or {}).get("executable") or "the box's Python"
    for name in NEEDED[settings.chat_mode]:
        if found.get(name):
            yield Finding(section, f"import {name}", "pass", f"{name} is installed in {python}")
        else:
            yield Finding(section, f"import {name}", "fail", f"{name} is not installed in "
                          f"{python} ({settings.chat_mode} mode needs it)",
                          f"Point REMOTE_PYTHON (or CONDA_ENV) at the Python that has {name}, "
                          f"or install it there (`python3 -m pip install {name}`).")


def judge_stack(settings: Settings, facts: dict[str, Any]) -> Iterator[Finding]:
    section = "LlamaFactory"
    imports = facts.get("imports") or {}
    if "error" in imports:
        yield Finding(section, "imports", "fail", "the import check did not finish: "
                       f"{imports['error']}", "Run the Python above on the box and `import "
                       "llamafactory` by hand to see why.")
        return
    yield from _judge_cli(settings, facts)
    needed = NEEDED[settings.chat_mode]
    for name in (*needed, "llamafactory" if settings.chat_mode == "cli" else "pexpect"):
        fact = imports.get(name) or {"ok": False, "error": "not checked"}
        required = name in needed
        if fact["ok"]:
            yield Finding(section, f"import {name}", "pass",
                           f"{name} {fact.get('version') or ''}".strip())
        else:
            yield Finding(section, f"import {name}", "fail" if required else "warn",
                           f"{name}: {fact['error']}"
                           + ("" if required else f" (not needed in {settings.chat_mode} mode)"),
                           f"Install it in the Python above (`python3 -m pip install {name}`), "
                           "or point REMOTE_PYTHON / CONDA_ENV at the Python that has it."
                           if required else "")
    torch = imports.get("torch") or {}
    if not torch.get("ok"):
        yield Finding(section, "torch", "fail", f"torch: {torch.get('error')}",
                       "Install LlamaFactory with its torch in the box's Python.")
        return
    gpus = torch.get("gpus") or []
    if gpus:
        names = "; ".join(f"{g['index']}: {g['name']}, {_size(g['free_bytes'])} free of "
                          f"{_size(g['total_bytes'])}" for g in gpus)
        yield Finding(section, "torch", "pass", f"torch {torch['version']}, CUDA: {names}")
    else:
        yield Finding(section, "torch", "warn", f"torch {torch['version']}, no CUDA GPU "
                       f"({torch.get('cuda_error') or 'none visible'}): the model runs on the "
                       "CPU, slowly for a real one", "On a GPU box: check `nvidia-smi` and "
                       "that torch is a CUDA build (`python -c 'import torch; "
                       "print(torch.version.cuda)'`).")


def judge_models(settings: Settings, facts: dict[str, Any], catalog: Catalog | None,
                 scan_error: str | None) -> Iterator[Finding]:
    """The folders (from the probe), then what a scan of ADAPTER_DIRS made of them: the
    configured adapter's training template and base, and every run's problems."""
    section = "Models"
    base = facts.get("base") or {"path": settings.base_model_path, "exists": False}
    if not base["exists"]:
        yield Finding(section, "base", "fail", f"BASE_MODEL_PATH {base['path']} does not "
                      "exist on the box", "Set BASE_MODEL_PATH to the model folder on the box "
                      "(the one with config.json), as an absolute path.")
    elif "config.json" not in base:
        yield Finding(section, "base", "fail", f"{base['path']} has no config.json: not a "
                      "Hugging Face model folder", "Point BASE_MODEL_PATH at the folder that "
                      "holds config.json and the weights.")
    else:
        yield Finding(section, "base", "pass", f"{base['path']}: "
                      f"{base['config.json'].get('model_type') or 'a model'}, "
                      f"{_size(base.get('weight_bytes') or 0)} of weights")
    for adapter in facts.get("adapters") or []:
        if not adapter["exists"] or adapter.get("adapter_config.json") is None:
            yield Finding(section, "adapter", "fail", f"ADAPTER_PATH {adapter['path']} "
                          + ("does not exist on the box" if not adapter["exists"] else
                             "has no adapter_config.json"),
                          "Set ADAPTER_PATH to a run or checkpoint folder with "
                          "adapter_config.json (or leave it empty and use ADAPTER_DIRS).")
        else:
            yield from _judge_configured_adapter(settings, adapter["path"], catalog)
    for folder in facts.get("adapter_dirs") or []:
        if folder["exists"] and folder.get("readable"):
            yield Finding(section, "adapter dir", "pass", f"{folder['path']} is readable")
        else:
            yield Finding(section, "adapter dir", "fail", f"ADAPTER_DIRS entry "
                          f"{folder['path']} " + ("does not exist" if not folder["exists"]
                                                  else "is not readable") + " on the box",
                          "Fix that entry of ADAPTER_DIRS (comma-separated folders of the "
                          "box, e.g. LlamaFactory's saves/).")
    if scan_error is not None:
        yield Finding(section, "runs", "fail", f"scanning ADAPTER_DIRS failed: {scan_error}",
                      "Run `lfgate doctor` again; if it fails the same way, the box's Python "
                      "above cannot run our scanner.")
    elif catalog is not None and settings.adapter_dir_list:
        yield from _judge_runs(settings, catalog)
    yield from _judge_memory(base, facts)


def _judge_configured_adapter(settings: Settings, path: str, catalog: Catalog | None
                              ) -> Iterator[Finding]:
    section = "Models"
    spec = catalog.specs[0] if catalog is not None and catalog.specs else None
    facts = spec.facts if spec is not None else None
    if facts is None:
        yield Finding(section, "adapter", "pass", f"{path} holds an adapter")
        return
    if facts.saved_base and not facts.base_resolved \
            and not same_path(facts.saved_base, settings.base_model_path):
        yield Finding(section, "adapter", "warn", f"{path} was trained on {facts.saved_base}, "
                      f"not BASE_MODEL_PATH {settings.base_model_path}", "Nothing to do if "
                      "that is the same model in another folder; otherwise set "
                      f"BASE_MODEL_PATH={facts.saved_base}.")
    elif facts.base_resolved:
        yield Finding(section, "adapter", "pass", f"{path}: the base it saved "
                      f"({facts.saved_base}) is not on the box; served on BASE_MODEL_PATH")
    else:
        yield Finding(section, "adapter", "pass", f"{path}: trained on "
                      f"{facts.saved_base or 'BASE_MODEL_PATH'}")
    trained = facts.training_template
    if trained is None:
        yield Finding(section, "template", "warn", f"the run of {path} saved no training "
                      f"template; TEMPLATE={settings.template} is used", "Make sure TEMPLATE "
                      "is the template the adapter was trained with.")
    elif trained != settings.template:
        yield Finding(section, "template", "fail", f"{path} was trained with template "
                      f"{trained!r}, but TEMPLATE={settings.template}: replies would be "
                      "gibberish or never stop", f"Set TEMPLATE={trained} in .env.")
    else:
        yield Finding(section, "template", "pass", f"TEMPLATE={trained}, as trained")


def _judge_runs(settings: Settings, catalog: Catalog) -> Iterator[Finding]:
    """What the scan found. Adapters served with their own training template, or on
    BASE_MODEL_PATH because the base they saved is not on the box, are counted, not warned
    about: the gateway handles both. No saved template, and broken folders, are warnings."""
    section = "Models"
    found = [s for s in catalog.specs if s.facts is not None and s.id != CONFIGURED_ID]
    runs = {s.facts.run for s in found if s.facts is not None}
    own_template = sum(1 for s in found if s.facts and s.facts.training_template
                       and s.facts.training_template != settings.template)
    resolved = sum(1 for s in found if s.facts and s.facts.base_resolved)
    notes = [f"{own_template} served with the template they were trained with"] \
        if own_template else []
    if resolved:
        notes.append(f"{resolved} on BASE_MODEL_PATH (the base they saved is not on the box)")
    yield Finding(section, "runs", "pass" if found else "warn",
                  f"{len(found)} adapter(s) and checkpoint(s) in {len(runs)} run(s) under "
                  "ADAPTER_DIRS" + (f"; {'; '.join(notes)}" if notes else "")
                  + ("; the scan stopped early" if catalog.truncated else ""),
                  "" if found else "Point ADAPTER_DIRS at LlamaFactory's saves/ folder.")
    broken = [s for s in found if s.problems]
    untemplated = [s for s in found if not s.problems and s.facts
                   and s.facts.training_template is None]
    for spec in broken[:_SHOWN]:
        yield Finding(section, "broken adapter", "warn", f"{spec.id}: "
                      f"{'; '.join(spec.problems)}", "It is listed but cannot be chosen; fix "
                      "or remove that folder.")
    if untemplated:
        names = ", ".join(s.id for s in untemplated[:_SHOWN])
        more = f" and {len(untemplated) - _SHOWN} more" if len(untemplated) > _SHOWN else ""
        yield Finding(section, "no template", "warn", f"{names}{more}: no training template "
                      f"saved, served with TEMPLATE={settings.template}", "Keep LlamaFactory's "
                      "training_args.yaml beside the adapters, or check TEMPLATE.")
    if len(broken) > _SHOWN:
        yield Finding(section, "more", "warn", f"{len(broken) - _SHOWN} more broken "
                      "adapter(s): the model list (/api/models) has them all")


def _judge_memory(base: dict[str, Any], facts: dict[str, Any]) -> Iterator[Finding]:
    gpus = ((facts.get("imports") or {}).get("torch") or {}).get("gpus") or []
    weights = base.get("weight_bytes") or 0
    if gpus and weights:
        free = max(g["free_bytes"] for g in gpus)
        enough = weights * 1.2 <= free
        yield Finding("Models", "memory", "pass" if enough else "warn",
                      f"the base needs about {_size(weights * 1.2)} (weights + 20%); the "
                      f"freest GPU has {_size(free)}",
                      "" if enough else "Free the GPU (a training run?), use a smaller or "
                      "quantized model, or several GPUs (INFER_BACKEND=vllm).")
