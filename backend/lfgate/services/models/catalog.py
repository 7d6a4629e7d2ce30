"""What the gateway offers: one ModelSpec per (base, adapter or none, template), with a stable id.

The configured pair from `.env` (`default`, and its base as `base`), every adapter and
checkpoint a scan of ADAPTER_DIRS found, and each distinct base they sit on. Ids are built from
what is on the box (an adapter's path under its ADAPTER_DIRS entry, `/` written as `--`), so the
same tree gives the same ids on every scan and after every restart. Pure functions: the
registry serves these specs, the discovery service feeds them.

Names on the box are bytes, and need not be UTF-8 (a Latin-1 `run-caf\\xe9`). The scan gives
each path as the box's Python has it: a byte that is not UTF-8 is a lone surrogate
(U+DC80-U+DCFF, Python's surrogateescape), which JSON carries ("\\udce9") and the box's Python
turns back into that byte when it opens the path. Such a string is exact for the box but is no
Unicode text: it cannot be stored, sent as JSON or logged. So a spec shows every path as text
(`readable`: each such byte U+FFFD) and keeps the exact path aside, for the wrapper alone
(`ModelSpec.box_adapter_path`); a name that is not UTF-8 gets an id of its readable slug and a
hash of its bytes (`run-caf-1a2b3c`), the same on every scan (docs/protocol.md, "Paths").
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from lfgate.config import Settings
from lfgate.remote import wrapper_protocol as wp

ModelKind = Literal["base", "adapter"]
CONFIGURED_ID = "default"
CONFIGURED_BASE_ID = "base"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
SHAREABLE_PEFT_TYPES = (None, "LORA")


@dataclass(frozen=True)
class AdapterFacts:
    """What a scan learnt about an adapter folder and its run."""

    run: str  # the run's id (its final adapter's id)
    run_path: str  # the run's folder under its ADAPTER_DIRS entry, as users name it
    step: int | None  # None: the run's final adapter
    training_template: str | None
    saved_base: str | None
    base_resolved: bool  # the saved base is not on the box: BASE_MODEL_PATH was used
    peft_type: str | None
    size_bytes: int | None
    modified: float | None
    train_loss: float | None
    eval_loss: float | None


@dataclass(frozen=True)
class ModelSpec:
    id: str
    kind: ModelKind
    base_model_path: str
    adapter_path: str | None
    template: str
    finetuning_type: str
    infer_backend: str
    base_id: str | None = None  # an adapter's base model entry
    facts: AdapterFacts | None = None
    warnings: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # any problem: listed, but cannot be chosen
    # LlamaFactory's engine arguments (Settings.engine_args): the wrapper's `extra_args`.
    extra_args: dict[str, Any] = field(default_factory=dict, hash=False)
    box: str = ""  # the box that serves it (BOX_NAME, or a BOXES section)
    # The paths exactly as the box names them, where that is no Unicode text (a name that is
    # not UTF-8: see the module's docstring); None where the path above is exact. For the
    # wrapper alone (`box_*_path`): never shown, stored or logged.
    exact_base_model_path: str | None = field(default=None, repr=False)
    exact_adapter_path: str | None = field(default=None, repr=False)

    @property
    def usable(self) -> bool:
        return not self.problems

    @property
    def box_base_model_path(self) -> str:
        """The base's path as the wrapper must be given it (exact, maybe no Unicode text)."""
        return self.exact_base_model_path or self.base_model_path

    @property
    def box_adapter_path(self) -> str | None:
        """The adapter's path as the wrapper must be given it, and as it reports it held."""
        if self.adapter_path is None:
            return None
        return self.exact_adapter_path or self.adapter_path

    def for_wrapper(self, cli_path: str) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "base_model_path": self.box_base_model_path,
            "adapter_path": self.box_adapter_path,
            "template": self.template,
            "finetuning_type": self.finetuning_type,
            "infer_backend": self.infer_backend,
        }
        if self.extra_args:
            spec["extra_args"] = copy.deepcopy(self.extra_args)
        if cli_path:
            spec["cli_path"] = cli_path
        return spec


@dataclass
class Catalog:
    """A whole listing: the specs, each run's loss curve, and what the scan could not read."""

    specs: list[ModelSpec]
    curves: dict[str, dict[str, list[list[float]]]] = field(default_factory=dict)
    missing: list[dict[str, str]] = field(default_factory=list)
    truncated: bool = False


def readable(text: str) -> str:
    """`text` as people read it and any store keeps it: each lone surrogate (a byte of a name
    that is not UTF-8, as the box's Python gives it) and each NUL is U+FFFD. Unicode text
    (every name that is UTF-8) comes back as it is."""
    return wp.as_text(text)  # the protocol's one rule, as the wrapper writes its own


def _readable_value(value: Any) -> Any:
    """`readable` over every string of a value (keys too), through tuples, lists and dicts."""
    if isinstance(value, str):
        return readable(value)
    if isinstance(value, tuple | list):
        return type(value)(_readable_value(item) for item in value)
    if isinstance(value, dict):
        return {_readable_value(k): _readable_value(v) for k, v in value.items()}
    return value


def _exact_bytes(text: str) -> bytes:
    """The bytes the box means by `text` (surrogateescape); a lone surrogate that stands for no
    byte (JSON can say "\\ud800" in a file) is kept apart in its surrogatepass form."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _digest(text: str) -> str:
    return hashlib.sha256(_exact_bytes(text)).hexdigest()[:6]


def slug(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-.") or "x"


def name_id(name: str) -> str:
    """One folder name in an id: its slug; a name that is not UTF-8 (no Unicode text) also
    gets a hash of its bytes, so it never takes a neighbour's id nor depends on one."""
    if readable(name) == name:
        return slug(name)
    return f"{slug(readable(name))}-{_digest(name)}"


def path_id(relative: str) -> str:
    """An id from a path under an ADAPTER_DIRS entry: `qwen/lora/sft-a/checkpoint-20` is
    `qwen--lora--sft-a--checkpoint-20`: readable, URL-safe, the same on every scan."""
    parts = [name_id(part) for part in relative.replace(os.sep, "/").split("/")
             if part not in ("", ".")]
    return "--".join(parts)


def _hashed(model_id: str, relative: str) -> str:
    """An id told apart from another that slugs the same (`run 1` and `run?1`)."""
    return f"{model_id}-{_digest(relative)}"


def same_path(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return os.path.normpath(os.path.expanduser(a)) == os.path.normpath(os.path.expanduser(b))


def configured_specs(settings: Settings) -> list[ModelSpec]:
    """`default` is the configured model; with an adapter, its base alone is `base`."""
    common = {"base_model_path": settings.base_model_path, "template": settings.template,
              "finetuning_type": settings.finetuning_type,
              "infer_backend": settings.infer_backend, "extra_args": settings.engine_args()}
    adapter = settings.adapter_path or None
    specs = [ModelSpec(id=CONFIGURED_ID, kind="adapter" if adapter else "base",
                       adapter_path=adapter, base_id=CONFIGURED_BASE_ID if adapter else None,
                       **common)]
    if adapter:
        specs.append(ModelSpec(id=CONFIGURED_BASE_ID, kind="base", adapter_path=None, **common))
    return specs


def _configured_base_id(settings: Settings) -> str:
    return CONFIGURED_BASE_ID if settings.adapter_path else CONFIGURED_ID


def _root_prefix(root: str, parts: int) -> str:
    return path_id("/".join(root.rstrip("/").split("/")[-parts:]))


def _root_id(root: str) -> str:
    """An adapter that is its ADAPTER_DIRS entry itself: the id of the entry's own name."""
    return path_id(os.path.basename(root)) or slug(root)


def _adapter_ids(adapters: list[dict[str, Any]]) -> list[str]:
    """Each adapter's id; where two ADAPTER_DIRS entries hold the same relative path, as
    much of each entry's own path goes in front as tells them apart (`one--saves--run`)."""
    plain = [path_id(a["relative"]) or _root_id(a["root"]) for a in adapters]
    # Folders whose names differ only in characters an id cannot hold (`run 1`, `run?1`):
    # those with such characters get a hash of their path; a plain name keeps its id.
    # So do folders whose own name holds "--", as a nested path's id does (`x--y` and
    # `x/y`): the nested one keeps the readable id.
    counts = Counter(plain)
    for index, model_id in enumerate(plain):
        relative = adapters[index]["relative"]
        if counts[model_id] > 1 and (path_id(relative) != relative.replace(os.sep, "--")
                                     or any("--" in part for part in relative.split(os.sep))):
            plain[index] = _hashed(model_id, relative)
    counts = Counter(plain)
    ids = list(plain)
    clashing: dict[str, list[int]] = {}
    for index, name in enumerate(plain):
        if counts[name] > 1 or name in (CONFIGURED_ID, CONFIGURED_BASE_ID) \
                or name.startswith("base--"):
            clashing.setdefault(name, []).append(index)
    for name, indexes in clashing.items():
        roots = {adapters[i]["root"] for i in indexes}
        most = max(len(r.rstrip("/").split("/")) for r in roots)
        parts = 1
        while parts < most and len({_root_prefix(r, parts) for r in roots}) < len(roots):
            parts += 1
        for i in indexes:
            ids[i] = f"{_root_prefix(adapters[i]['root'], parts)}--{name}"
    # Whatever is still shared (the same path listed under two names of one root): every one
    # after the first is told apart by a hash of its path. Ids never collide.
    seen: set[str] = set()
    for index, model_id in enumerate(ids):
        if model_id in seen:
            ids[index] = _hashed(model_id, adapters[index]["path"])
        seen.add(ids[index])
    return ids


def _run_id(adapter: dict[str, Any]) -> str:
    run = adapter.get("run") or "."
    return path_id(run) or _root_id(adapter["root"])


def _facts(adapter: dict[str, Any], run_id: str) -> AdapterFacts:
    run_path = adapter.get("run") or "."
    return AdapterFacts(
        run=run_id, run_path=os.path.basename(adapter["root"]) if run_path == "." else run_path,
        step=adapter.get("step"), training_template=adapter.get("template"),
        saved_base=adapter.get("saved_base"), base_resolved=bool(adapter.get("base_resolved")),
        peft_type=adapter.get("peft_type"), size_bytes=adapter.get("size_bytes"),
        modified=adapter.get("modified"), train_loss=_loss(adapter.get("train_loss")),
        eval_loss=_loss(adapter.get("eval_loss")))


def _loss(value: Any) -> float | None:
    """A loss from the box as a number, or None: a wrapper of another version, or a log
    with "n/a" in it, must not make the listing fail."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _adapter_warnings(facts: AdapterFacts, base: str, settings: Settings,
                      served_template: str) -> list[str]:
    warnings = []
    trained = facts.training_template
    if trained is None:
        warnings.append("the run saved no training template (training_args.yaml or "
                        f"llamaboard_config.yaml); served with TEMPLATE={served_template}")
    elif trained != served_template:
        warnings.append(f"trained with template {trained!r} but served with "
                        f"{served_template!r}: replies may be gibberish or never stop")
    elif trained != settings.template:
        warnings.append(f"trained with template {trained!r}, not .env's TEMPLATE="
                        f"{settings.template}: served with {trained!r}, as trained")
    if facts.base_resolved and facts.saved_base and not same_path(facts.saved_base, base):
        warnings.append(f"trained on {facts.saved_base}, which is not on the box: served on "
                        f"BASE_MODEL_PATH={base}")
    return warnings


def _configured_warnings(settings: Settings, facts: AdapterFacts | None,
                         saved_base: str | None, base_resolved: bool) -> list[str]:
    """What is wrong with `.env`'s own pair, judged by what its adapter's run saved."""
    if facts is None:
        return []
    warnings = []
    trained = facts.training_template
    if trained and trained != settings.template:
        warnings.append(f"ADAPTER_PATH was trained with template {trained!r} but TEMPLATE="
                        f"{settings.template}: replies may be gibberish or never stop; set "
                        f"TEMPLATE={trained}")
    if saved_base and not base_resolved and not same_path(saved_base, settings.base_model_path):
        warnings.append(f"ADAPTER_PATH was trained on {saved_base}, not on BASE_MODEL_PATH="
                        f"{settings.base_model_path}")
    return warnings


def build_catalog(settings: Settings, scan: dict[str, Any] | None) -> Catalog:
    """Every model: the configured ones first, then other bases, then runs and checkpoints."""
    configured = configured_specs(settings)
    if not scan:
        return _shown(Catalog(configured))
    adapters = [a for a in scan.get("adapters") or [] if isinstance(a, dict)]
    listed = [a for a in adapters if not a.get("explicit")]
    for adapter in adapters:  # the configured adapter's own run: warnings for `default`
        if settings.adapter_path and same_path(adapter.get("path"), settings.adapter_path):
            run_id = _run_id(adapter)
            warnings = _configured_warnings(settings, _facts(adapter, run_id),
                                            adapter.get("saved_base"),
                                            bool(adapter.get("base_resolved")))
            configured[0] = replace(configured[0], warnings=tuple(warnings),
                                    facts=_facts(adapter, run_id))
            break

    base_ids = {os.path.normpath(settings.base_model_path): _configured_base_id(settings)}
    other_bases = sorted({a["base"] for a in listed if a.get("base") and a.get("kind") != "full"}
                         - {settings.base_model_path}, key=str)
    base_specs = []
    taken = {spec.id for spec in configured}
    for base in other_bases:
        if os.path.normpath(base) in base_ids:
            continue
        name = f"base--{name_id(os.path.basename(base.rstrip('/')) or base)}"
        candidate, n = name, 2
        while candidate in taken:
            candidate, n = f"{name}-{n}", n + 1
        taken.add(candidate)
        base_ids[os.path.normpath(base)] = candidate
        base_specs.append(ModelSpec(
            id=candidate, kind="base", base_model_path=base, adapter_path=None,
            template=settings.template, finetuning_type=settings.finetuning_type,
            infer_backend=settings.infer_backend, extra_args=settings.engine_args(),
            warnings=(f"a base found under ADAPTER_DIRS, served with TEMPLATE="
                      f"{settings.template}",)))

    adapter_specs = []
    curves: dict[str, dict[str, list[list[float]]]] = {}
    ids = _adapter_ids(listed)
    # A run's id is its final adapter's (told apart as that one is), else made from its path.
    run_ids = {(a["root"], a["relative"]): model_id for a, model_id in zip(listed, ids,
                                                                           strict=True)}
    for adapter, model_id in zip(listed, ids, strict=True):
        run_id = run_ids.get((adapter["root"], adapter.get("run") or "."), _run_id(adapter))
        facts = _facts(adapter, run_id)
        base = adapter.get("base") or ""
        template = facts.training_template or settings.template
        problems = [str(p) for p in adapter.get("problems") or []]
        if adapter.get("kind") == "full":  # a whole fine-tuned model: its own weights
            adapter_specs.append(ModelSpec(
                id=model_id, kind="base", base_model_path=adapter["path"], adapter_path=None,
                template=template, finetuning_type=adapter.get("finetuning_type") or "full",
                infer_backend=settings.infer_backend, extra_args=settings.engine_args(),
                facts=facts, warnings=tuple(_full_warnings(facts, settings, template)),
                problems=tuple(problems)))
        else:
            adapter_specs.append(_adapter_spec(adapter, model_id, facts, base, template,
                                               problems, base_ids, settings))
        run_dir = adapter.get("run_dir")
        if run_dir and run_dir in (scan.get("curves") or {}):
            curves[run_id] = scan["curves"][run_dir]
    adapter_specs.sort(key=lambda s: (s.facts.run if s.facts else "",
                                      -1 if s.facts is None or s.facts.step is None
                                      else s.facts.step))
    return _shown(Catalog([*configured, *base_specs, *adapter_specs], curves,
                          list(scan.get("missing") or []), bool(scan.get("truncated"))))


def _shown(catalog: Catalog) -> Catalog:
    """The listing as text: built from the scan's exact paths (so that two folders whose
    names read alike stay apart), then every string in it made `readable`, the exact paths
    kept aside for the wrapper. Whatever a scan holds, nothing that is no Unicode text leaves
    here for an answer, a log or the database."""
    return Catalog([_spec_shown(spec) for spec in catalog.specs],
                   _readable_value(catalog.curves), _readable_value(catalog.missing),
                   catalog.truncated)


def _spec_shown(spec: ModelSpec) -> ModelSpec:
    changes: dict[str, Any] = {}
    for item in dataclasses.fields(spec):
        if item.name in ("exact_base_model_path", "exact_adapter_path"):
            continue
        value = getattr(spec, item.name)
        shown = (replace(value, **{f.name: _readable_value(getattr(value, f.name))
                                   for f in dataclasses.fields(value)})
                 if isinstance(value, AdapterFacts) else _readable_value(value))
        if shown != value:
            changes[item.name] = shown
    if not changes:
        return spec
    if "base_model_path" in changes:
        changes["exact_base_model_path"] = spec.base_model_path
    if "adapter_path" in changes:
        changes["exact_adapter_path"] = spec.adapter_path
    return replace(spec, **changes)


def _full_warnings(facts: AdapterFacts, settings: Settings, template: str) -> list[str]:
    warnings = [f"a whole fine-tuned model ({facts.run_path}): loaded as its own model, "
                "with its own copy of the weights"]
    if facts.training_template is None:
        warnings.append(f"the run saved no training template; served with TEMPLATE={template}")
    elif facts.training_template != settings.template:
        warnings.append(f"trained with template {facts.training_template!r}, not .env's "
                        f"TEMPLATE={settings.template}: served with {template!r}, as trained")
    return warnings


def _adapter_spec(adapter: dict[str, Any], model_id: str, facts: AdapterFacts, base: str,
                  template: str, problems: list[str], base_ids: dict[str, str],
                  settings: Settings) -> ModelSpec:
    finetuning_type = adapter.get("finetuning_type") or "lora"
    return ModelSpec(
        id=model_id, kind="adapter", base_model_path=base, adapter_path=adapter["path"],
        template=template, finetuning_type=finetuning_type,
        infer_backend=settings.infer_backend, extra_args=settings.engine_args(),
        base_id=base_ids.get(os.path.normpath(base)) if base else None, facts=facts,
        warnings=() if problems else tuple(
            [*_adapter_warnings(facts, base, settings, template),
             *(str(note) for note in adapter.get("notes") or [])]),
        problems=tuple(problems))


def on_box(catalog: Catalog, box: str, prefix: str) -> Catalog:
    """The listing of one box among several: every spec names its box, and every id (its own,
    its base's, its run's) starts with `prefix` (empty for the .env's box), so an id says
    which box serves it and two boxes with the same folders never share an id."""
    def qualified(model_id: str | None) -> str | None:
        return None if model_id is None else f"{prefix}{model_id}"

    specs = [replace(spec, id=f"{prefix}{spec.id}", base_id=qualified(spec.base_id), box=box,
                     facts=None if spec.facts is None
                     else replace(spec.facts, run=f"{prefix}{spec.facts.run}"))
             for spec in catalog.specs]
    curves = {f"{prefix}{run}": curve for run, curve in catalog.curves.items()}
    return Catalog(specs, curves, catalog.missing, catalog.truncated)
