"""INFER_BACKEND=vllm / sglang: LlamaFactory's own engines, and exactly what reaches them.

This machine has no GPU and neither vLLM nor SGLang is installed, so no engine can load here;
what is tested is the plumbing, exactly: from the .env keys, through the model spec the
gateway sends, to the dict the real `ChatModel(...)` gets in script mode and to the command
line and 0600 YAML file the real `llamafactory-cli chat` gets in CLI mode. A spy
(tests/rig/engine_spy) records ChatModel's arguments and what LlamaFactory 0.9.5's own
`read_args` makes of them, then lets the real ChatModel refuse the missing engine, after its
HfArgumentParser has accepted every key (an unknown key would be its own error). The last
tests hold our keys and docs/engines.md to LlamaFactory 0.9.5's installed source.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest

from lfgate.config import ENGINE_ARGS, JSON_ENGINE_ARGS, Settings, SettingsError, load_settings
from lfgate.remote import wrapper_protocol as wp
from lfgate.services.models.catalog import build_catalog
from lfgate.services.models.registry import ModelRegistry
from tests.rig.saves_tree import make_saves
from tests.wrapper_process import ROOT, WrapperProcess

# The box-side modules, imported as the box imports them (by file name).
sys.path.insert(0, str(ROOT / "remote"))
from discover_adapters import scan

import wrapper_protocol as box_protocol  # the box's own copy, as json_grammar raises it
import wrapper_serve
from json_grammar import JsonGrammars

ENGINE_SPY = ROOT / "tests" / "rig" / "engine_spy"
BOX_PATH = "/usr/bin:/bin"  # the wrappers' PATH in these tests, so the PATH they pass is exact

# Every engine key as .env gives it (strings), and what LlamaFactory must get for it.
ENV = {
    "vllm": {"vllm_maxlen": "8192", "vllm_gpu_util": "0.85", "vllm_enforce_eager": "true",
             "vllm_max_lora_rank": "64",
             "vllm_config": '{"tensor_parallel_size": 2, "max_loras": 1, '
                            '"enable_prefix_caching": true, "swap_space": 4.5}'},
    "sglang": {"sglang_maxlen": "16384", "sglang_mem_fraction": "0.8", "sglang_tp_size": "2",
               "sglang_lora_backend": "flashinfer"},
}
SENT = {
    "vllm": {"vllm_maxlen": 8192, "vllm_gpu_util": 0.85, "vllm_enforce_eager": True,
             "vllm_max_lora_rank": 64,
             "vllm_config": {"tensor_parallel_size": 2, "max_loras": 1,
                             "enable_prefix_caching": True, "swap_space": 4.5}},
    "sglang": {"sglang_maxlen": 16384, "sglang_mem_fraction": 0.8, "sglang_tp_size": 2,
               "sglang_lora_backend": "flashinfer"},
}
OTHER = {"vllm": "sglang", "sglang": "vllm"}


def typed(value: Any) -> Any:
    """The value with every leaf's type spelled out: `1 == True` and `2 == 2.0` do not pass."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def engine_settings(dirs: dict[str, str], backend: str, **overrides: str) -> Settings:
    """Settings with every engine key of both engines set: only `backend`'s may be sent."""
    return load_settings(base_model_path=dirs["base"], adapter_path=dirs["adapter"],
                         template="qwen", infer_backend=backend, **ENV["vllm"], **ENV["sglang"],
                         **overrides)


def sent_to_wrapper(settings: Settings, model_id: str) -> dict[str, Any]:
    """The model spec the gateway sends in the wrapper's `load` (ModelRegistry._load)."""
    registry = ModelRegistry(None, settings)  # type: ignore[arg-type]  # no load, no box
    return registry.get(model_id).slot.load_spec.for_wrapper(settings.llamafactory_cli_path)


def expected_args(dirs: dict[str, str], backend: str, adapter: bool = True) -> dict[str, Any]:
    args = {"model_name_or_path": dirs["base"], "template": "qwen", "finetuning_type": "lora",
            "infer_backend": backend, **SENT[backend]}
    if adapter:
        args["adapter_name_or_path"] = dirs["adapter"]
    return args


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, str]:
    """A base folder and an adapter folder that pass the wrapper's path checks. LlamaFactory
    refuses the missing engine before it reads any weights, so no model is needed."""
    root = tmp_path_factory.mktemp("engine-models")
    base = root / "models" / "Qwen2.5-72B-Instruct"
    base.mkdir(parents=True)
    adapter = root / "saves" / "qwen-72b" / "lora" / "sft"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 64, "base_model_name_or_path": str(base)}))
    return {"base": str(base), "adapter": str(adapter)}


# --- Settings: the keys, their values, and what is sent ------------------------------------

@pytest.mark.parametrize("overrides, key", [
    ({"vllm_gpu_util": "1.5"}, "VLLM_GPU_UTIL"),
    ({"vllm_gpu_util": "0"}, "VLLM_GPU_UTIL"),
    ({"vllm_maxlen": "4k"}, "VLLM_MAXLEN"),
    ({"vllm_maxlen": "0"}, "VLLM_MAXLEN"),
    ({"vllm_enforce_eager": "maybe"}, "VLLM_ENFORCE_EAGER"),
    ({"vllm_max_lora_rank": "-8"}, "VLLM_MAX_LORA_RANK"),
    ({"vllm_config": "not json"}, "VLLM_CONFIG"),
    ({"vllm_config": "[1, 2]"}, "VLLM_CONFIG"),
    ({"vllm_config": "{'max_loras': 2}"}, "VLLM_CONFIG"),
    ({"sglang_lora_backend": "bogus"}, "SGLANG_LORA_BACKEND"),
    ({"sglang_mem_fraction": "1.2"}, "SGLANG_MEM_FRACTION"),
    ({"sglang_tp_size": "0"}, "SGLANG_TP_SIZE"),
    ({"sglang_maxlen": "8192.5"}, "SGLANG_MAXLEN"),
    ({"infer_backend": "tensorrt"}, "INFER_BACKEND"),
    # LlamaFactory 0.9.5 gives vLLM and SGLang one adapter: vLLM refuses several at load,
    # SGLang would serve the first alone. Refused at start-up instead.
    ({"infer_backend": "vllm", "adapter_path": "/a, /b"}, "ADAPTER_PATH"),
    ({"infer_backend": "sglang", "adapter_path": "/a,/b"}, "ADAPTER_PATH"),
    ({"infer_backend": "vllm", "adapter_path": "/a,"}, "ADAPTER_PATH"),  # LlamaFactory: 2
])
def test_a_bad_engine_value_stops_start_up_with_one_line_naming_the_key(overrides, key):
    with pytest.raises(SettingsError) as error:
        load_settings(base_model_path="/m", **overrides)
    message = str(error.value)
    assert message.startswith(f"invalid configuration: {key}: "), message
    assert "\n" not in message


def test_several_merged_adapters_stay_allowed_with_the_huggingface_engine():
    settings = load_settings(base_model_path="/m", adapter_path="/a,/b")
    assert (settings.infer_backend, settings.adapter_path) == ("huggingface", "/a,/b")


def test_an_empty_engine_key_in_env_is_llamafactorys_default(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(
        "BASE_MODEL_PATH=/m\nINFER_BACKEND=vllm\nVLLM_MAXLEN=\nVLLM_GPU_UTIL=\n"
        "VLLM_ENFORCE_EAGER=\nVLLM_MAX_LORA_RANK=  \nVLLM_CONFIG=\nSGLANG_TP_SIZE=\n"
        "SGLANG_LORA_BACKEND=\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.infer_backend == "vllm"
    assert settings.engine_args() == {}
    assert settings.warnings == []
    # Nothing sent at all: the wrapper's default `extra_args` is {}, LlamaFactory's defaults.
    assert "extra_args" not in sent_to_wrapper(settings, "default")


def test_engine_keys_from_env_are_sent_with_llamafactorys_types(tmp_path, monkeypatch):
    lines = [f"{key.upper()}={value}" for key, value in ENV["vllm"].items()]
    (tmp_path / ".env").write_text("BASE_MODEL_PATH=/m\nINFER_BACKEND=VLLM\nVLLM_ENFORCE_EAGER"
                                   "=True\n" + "\n".join(lines[:2] + lines[3:]) + "\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert typed(settings.engine_args()) == typed(SENT["vllm"])


@pytest.mark.parametrize("backend", ["vllm", "sglang"])
def test_another_engines_keys_warn_and_are_never_sent(dirs, backend):
    settings = engine_settings(dirs, backend)
    other = OTHER[backend]
    assert settings.warnings == [
        f"{name.upper()} is set but INFER_BACKEND={backend}: it is not sent (it is for "
        f"INFER_BACKEND={other})" for name in ENGINE_ARGS[other]]
    assert typed(settings.engine_args()) == typed(SENT[backend])
    catalog = build_catalog(settings, None)
    assert [spec.id for spec in catalog.specs] == ["default", "base"]
    for spec in catalog.specs:
        assert typed(spec.for_wrapper("")["extra_args"]) == typed(SENT[backend])


def test_with_the_huggingface_engine_no_engine_key_is_sent(dirs):
    settings = engine_settings(dirs, "huggingface")
    assert settings.engine_args() == {}
    assert len(settings.warnings) == len(ENGINE_ARGS["vllm"]) + len(ENGINE_ARGS["sglang"])
    assert all("is set but INFER_BACKEND=huggingface" in w for w in settings.warnings)
    for model_id in ("default", "base"):
        assert "extra_args" not in sent_to_wrapper(settings, model_id)


@pytest.mark.parametrize("backend", ["vllm", "sglang"])
def test_the_wrapper_turns_the_spec_into_exactly_llamafactorys_arguments(dirs, backend):
    """The wrapper side, without a box: the spec sent, checked as the wrapper checks it, made
    into LlamaFactory's arguments (the dict the box tests below see reach ChatModel)."""
    settings = engine_settings(dirs, backend)
    for model_id, adapter in (("default", True), ("base", False)):
        spec = json.loads(json.dumps(sent_to_wrapper(settings, model_id)))  # over the wire
        made = wrapper_serve.llamafactory_args(wp.check_model(spec))
        assert typed(made) == typed(expected_args(dirs, backend, adapter))


def test_engine_path_puts_the_box_pythons_folder_first(tmp_path):
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    assert wrapper_serve.engine_path(str(venv_bin), BOX_PATH) == BOX_PATH  # no python3 there
    (venv_bin / "python3").symlink_to(sys.executable)
    assert wrapper_serve.engine_path(str(venv_bin), BOX_PATH) == f"{venv_bin}:{BOX_PATH}"
    assert wrapper_serve.engine_path(str(venv_bin), f"/usr/bin:{venv_bin}:/bin") == (
        f"{venv_bin}:{BOX_PATH}")
    assert wrapper_serve.engine_path(str(venv_bin), "") == str(venv_bin)


# --- The registry: with vLLM or SGLang, every adapter is its own process -------------------

@pytest.mark.parametrize("backend, mode", [("vllm", "script"), ("sglang", "script"),
                                           ("vllm", "cli"), ("huggingface", "script")])
def test_with_vllm_or_sglang_each_adapter_has_its_own_slot_with_its_base(tmp_path, backend,
                                                                         mode):
    base = tmp_path / "models" / "tiny"
    base.mkdir(parents=True)
    made = make_saves(tmp_path / "saves", str(base))
    settings = load_settings(base_model_path=str(base), adapter_path=made["tiny--lora--sft-a"],
                             template="qwen", chat_mode=mode, infer_backend=backend,
                             adapter_dirs=str(tmp_path / "saves"), **ENV["vllm"],
                             **ENV["sglang"])
    found = scan({"dirs": [str(tmp_path / "saves")], "paths": [],
                  "base_model_path": str(base)})
    registry = ModelRegistry(None, settings)  # type: ignore[arg-type]
    registry.replace_catalog(build_catalog(settings, found))
    adapters = [e for e in registry.entries() if e.spec.adapter_path and e.spec.usable]
    assert len(adapters) >= 4, [e.spec.id for e in adapters]
    if backend == "huggingface" and mode == "script":  # the contrast: one base for them all
        assert {e.slot.key for e in adapters} == {f"base:{base}"}
        assert all(e.slot.shared and e.slot.load_spec.adapter_path is None for e in adapters)
        return
    assert len({id(e.slot) for e in adapters}) == len(adapters)
    for entry in adapters:
        assert not entry.slot.shared and not entry.shared_adapter
        sent = entry.slot.load_spec.for_wrapper("")
        assert sent == entry.spec.for_wrapper("")
        assert sent["adapter_path"] == entry.spec.adapter_path  # given to the engine at load
        assert sent["base_model_path"] == str(base)
        assert sent["infer_backend"] == backend
        assert typed(sent.get("extra_args", {})) == typed(SENT.get(backend, {}))
        assert entry.choice() is None  # chats name no adapter: the process holds one


# --- Script mode: the dict the real ChatModel gets ------------------------------------------

@pytest.fixture(scope="module", params=["vllm", "sglang"])
def script_wrapper(request, box_python, tmp_path_factory):
    """A script wrapper per engine (as on the box: a process serves one engine's models)."""
    folder = tmp_path_factory.mktemp("engine-script")
    wrapper = WrapperProcess(box_python, "script", folder / "spy.jsonl", env={
        "PYTHONPATH": str(ENGINE_SPY), "LFGATE_TEST_ENGINE_SPY": str(folder / "engine.jsonl"),
        "PATH": BOX_PATH})
    wrapper.engine_spy, wrapper.backend = folder / "engine.jsonl", request.param
    yield wrapper
    wrapper.kill()


@pytest.mark.box
@pytest.mark.parametrize("model_id", ["default", "base"])
def test_script_mode_chat_model_gets_exactly_the_engine_arguments(script_wrapper, dirs,
                                                                  box_python, model_id):
    backend = script_wrapper.backend
    settings = engine_settings(dirs, backend)
    before = len(records(script_wrapper.engine_spy))
    event = script_wrapper.load(sent_to_wrapper(settings, model_id))
    # LlamaFactory parsed every argument, then its own check found no vllm / sglang package.
    assert (event["event"], event["code"]) == ("error", wp.E_ENGINE_MISSING), event
    assert event["message"].startswith(f"INFER_BACKEND={backend} needs the {backend} package")
    assert f"The '{backend}>=" in event["message"]
    assert "distribution was not found" in event["message"]
    assert event["hint"] == wp.ERROR_HINTS[wp.E_ENGINE_MISSING]
    [record] = records(script_wrapper.engine_spy)[before:]
    expected = expected_args(dirs, backend, adapter=model_id == "default")
    assert typed(record["args"]) == typed(expected)
    assert typed(record["parsed"]) == typed(expected)
    # SGLang's server is `python3 -m sglang.launch_server` from PATH: the box Python's first.
    assert record["path"] == (f"{Path(box_python).parent}:{BOX_PATH}" if backend == "sglang"
                              else BOX_PATH)
    # Refused, not crashed: the wrapper still answers.
    script_wrapper.send({"op": wp.OP_PING, "id": "after"})
    pong, _ = script_wrapper.until(wp.EV_PONG, timeout=30)
    assert (pong["id"], pong["state"]) == ("after", "unloaded")


# --- CLI mode: the command line and YAML file the real llamafactory-cli gets ----------------

STANDIN = """#!{python}
# A stand-in llamafactory-cli: records how it was started, then runs the real CLI (THEN is
# its path) or, with THEN=prompt, answers like the CLI's chat loop (no model).
import json, os, stat, sys

config = sys.argv[2] if len(sys.argv) > 2 else ""
record = {{"argv": sys.argv, "config": open(config, encoding="utf-8").read() if config else None,
          "mode": stat.S_IMODE(os.stat(config).st_mode) if config else None,
          "path": os.environ.get("PATH", "")}}
with open(os.environ["LFGATE_TEST_STANDIN_RECORD"], "a", encoding="utf-8") as handle:
    handle.write(json.dumps(record) + "\\n")
then = os.environ["LFGATE_TEST_STANDIN_THEN"]
if then != "prompt":
    os.execv(then, [then, *sys.argv[1:]])
import readline  # noqa: F401  (input() then reads in raw mode, as in the real CLI)
print("Welcome to the CLI application, use `clear` to remove the history, use `exit` to exit "
      "the application.")
while True:
    try:
        query = input("\\nUser: ")
    except EOFError:
        break
    if query.strip() == "exit":
        break
    if query.strip() == "clear":
        print("History has been removed.")
        continue
    # One write: the wrapper must keep reply text that comes with `Assistant: ` in one read.
    sys.stdout.write("Assistant: stand-in reply\\n")
    sys.stdout.flush()
"""


@pytest.fixture(scope="module")
def standin(box_python, tmp_path_factory) -> dict[str, str]:
    """The stand-in CLI in a bin/ beside a python3, as llamafactory-cli sits in a venv."""
    folder = tmp_path_factory.mktemp("engine-cli")
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(box_python)
    cli = bin_dir / "llamafactory-cli"
    cli.write_text(STANDIN.format(python=box_python))
    cli.chmod(0o755)
    (folder / "tmp").mkdir()
    return {"cli": str(cli), "bin": str(bin_dir), "tmp": str(folder / "tmp"),
            "real": str(Path(box_python).parent / "llamafactory-cli")}


def cli_wrapper(box_python: str, standin: dict[str, str], folder: Path, then: str):
    return WrapperProcess(box_python, "cli", folder / "spy.jsonl", env={
        "PYTHONPATH": str(ENGINE_SPY), "LFGATE_TEST_ENGINE_SPY": str(folder / "engine.jsonl"),
        "LFGATE_TEST_STANDIN_RECORD": str(folder / "standin.jsonl"),
        "LFGATE_TEST_STANDIN_THEN": then, "PATH": BOX_PATH, "TMPDIR": standin["tmp"]})


@pytest.fixture(scope="module")
def real_cli_wrapper(box_python, standin, tmp_path_factory):
    """CLI mode whose stand-in records, then runs the real llamafactory-cli."""
    folder = tmp_path_factory.mktemp("engine-cli-real")
    wrapper = cli_wrapper(box_python, standin, folder, standin["real"])
    wrapper.folder = folder
    yield wrapper
    wrapper.kill()


@pytest.mark.box
@pytest.mark.parametrize("backend", ["vllm", "sglang"])
def test_cli_mode_llamafactory_cli_gets_exactly_the_engine_arguments(real_cli_wrapper, standin,
                                                                     dirs, backend):
    settings = engine_settings(dirs, backend, chat_mode="cli",
                               llamafactory_cli_path=standin["cli"])
    spec = sent_to_wrapper(settings, "default")
    standin_log = real_cli_wrapper.folder / "standin.jsonl"
    spy_log = real_cli_wrapper.folder / "engine.jsonl"
    before, before_spy = len(records(standin_log)), len(records(spy_log))
    event = real_cli_wrapper.load(spec)
    # The real CLI parsed the file, then refused the missing engine, and the wrapper says so.
    assert (event["event"], event["code"]) == ("error", wp.E_ENGINE_MISSING), event
    assert event["message"].startswith(f"INFER_BACKEND={backend} needs the {backend} package")
    assert "llamafactory-cli exited" in event["message"]
    assert "distribution was not found" in event["message"]
    [started] = records(standin_log)[before:]
    expected = expected_args(dirs, backend)
    # The command line: `llamafactory-cli chat FILE`, nothing else (no value on it).
    cli, command, config = started["argv"]
    assert (cli, command) == (standin["cli"], "chat")
    assert Path(config).name == "chat.yaml"
    assert Path(config).parent.name.startswith("lfgate-cli-")
    assert Path(config).parent.parent == Path(standin["tmp"])
    assert started["mode"] == 0o600
    assert typed(json.loads(started["config"])) == typed(expected)
    assert not Path(config).exists()  # removed once the CLI is done with it
    assert started["path"] == (f"{standin['bin']}:{BOX_PATH}" if backend == "sglang"
                               else BOX_PATH)
    # Inside the real CLI: ChatModel() reads the file; LlamaFactory's read_args gets exactly it.
    [inside] = records(spy_log)[before_spy:]
    assert inside["args"] is None
    assert typed(inside["parsed"]) == typed(expected)
    assert inside["path"] == started["path"]


@pytest.mark.box
def test_a_cli_restart_for_new_settings_keeps_the_engine_arguments(box_python, standin, dirs,
                                                                   tmp_path):
    settings = engine_settings(dirs, "vllm", chat_mode="cli",
                               llamafactory_cli_path=standin["cli"])
    wrapper = cli_wrapper(box_python, standin, tmp_path, "prompt")
    try:
        ready = wrapper.load(sent_to_wrapper(settings, "default"), {"temperature": 0.5})
        assert ready["event"] == "ready", ready
        done, seen = wrapper.chat("t1", [{"role": "user", "content": "hi"}],
                                  {"temperature": 0.9, "max_new_tokens": 16})
        assert (done["event"], done.get("content")) == ("done", "stand-in reply"), done
        assert wp.INFO_CLI_RESTARTED in [e.get("code") for e in seen if e["event"] == "info"]
        assert wrapper.close() == 0
    finally:
        wrapper.kill()
    first, second = records(tmp_path / "standin.jsonl")
    expected = expected_args(dirs, "vllm")
    assert typed(json.loads(first["config"])) == typed({**expected, "temperature": 0.5})
    assert typed(json.loads(second["config"])) == typed(
        {**expected, "temperature": 0.9, "max_new_tokens": 16})
    assert first["path"] == second["path"] == BOX_PATH


# --- Held to LlamaFactory 0.9.5's installed source ------------------------------------------

LF_FIELDS = """
import dataclasses, json, typing
from llamafactory.hparams.model_args import SGLangArguments, VllmArguments

def kind(hint):
    if typing.get_origin(hint) is typing.Literal:
        return ["literal", list(typing.get_args(hint))]
    if dict in typing.get_args(hint):
        return ["dict", []]
    return [hint.__name__, []]

print(json.dumps({cls.__name__: {f.name: kind(f.type) for f in dataclasses.fields(cls)}
                  for cls in (VllmArguments, SGLangArguments)}))
"""

LF_SOURCES = """
import inspect, json
from llamafactory.chat import sglang_engine, vllm_engine
from llamafactory.hparams import parser
print(json.dumps({"vllm": inspect.getsource(vllm_engine.VllmEngine.__init__),
                  "sglang": inspect.getsource(sglang_engine.SGLangEngine.__init__),
                  "parser": inspect.getsource(parser.get_infer_args)}))
"""


def box_json(box_python: str, code: str) -> dict[str, Any]:
    done = subprocess.run([box_python, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def our_kind(name: str) -> list[Any]:
    if name in JSON_ENGINE_ARGS:
        return ["dict", []]
    [hint] = [a for a in get_args(Settings.model_fields[name].annotation) if a is not type(None)]
    if get_origin(hint) is Literal:
        return ["literal", list(get_args(hint))]
    return [hint.__name__, []]


@pytest.mark.box
def test_every_engine_key_is_a_llamafactory_argument_of_the_same_type(box_python):
    fields = box_json(box_python, LF_FIELDS)
    assert {name: our_kind(name) for name in ENGINE_ARGS["vllm"]} == fields["VllmArguments"]
    # sglang_config is parsed by 0.9.5 but its SGLang engine never reads it (next test).
    sglang = {k: v for k, v in fields["SGLangArguments"].items() if k != "sglang_config"}
    assert {name: our_kind(name) for name in ENGINE_ARGS["sglang"]} == sglang


@pytest.mark.box
def test_what_docs_engines_md_says_of_llamafactory_0_9_5_is_in_its_source(box_python):
    source = box_json(box_python, LF_SOURCES)
    vllm, sglang = source["vllm"], source["sglang"]
    # vLLM: tensor parallel over every visible GPU; VLLM_CONFIG is applied last, so it wins.
    assert '"tensor_parallel_size": get_device_count() or 1,' in vllm
    assert vllm.index('"tensor_parallel_size"') < vllm.index(
        "engine_args.update(model_args.vllm_config)")
    for line in ('"max_model_len": model_args.vllm_maxlen,',
                 '"gpu_memory_utilization": model_args.vllm_gpu_util,',
                 '"enforce_eager": model_args.vllm_enforce_eager,',
                 '"enable_lora": model_args.adapter_name_or_path is not None,',
                 '"max_lora_rank": model_args.vllm_max_lora_rank,'):
        assert line in vllm
    # One LoRA request, fixed at load, for every request: no adapter per request.
    assert 'LoRARequest("default", 1, model_args.adapter_name_or_path[0])' in vllm
    assert "vLLM only accepts a single adapter" in source["parser"]
    # SGLang: its own server, `python3` from PATH; tp over every GPU unless SGLANG_TP_SIZE.
    assert '"python3 -m sglang.launch_server"' in sglang
    for flag in ("--context-length {model_args.sglang_maxlen}",
                 "--mem-fraction-static {model_args.sglang_mem_fraction}",
                 "--tp-size {model_args.sglang_tp_size if model_args.sglang_tp_size != -1 else "
                 "get_device_count() or 1}",
                 "--lora-backend {model_args.sglang_lora_backend}",
                 "--lora-paths lora0={model_args.adapter_name_or_path[0]}",
                 '"--max-loras-per-batch 1"'):
        assert flag in sglang
    assert "sglang_config" not in sglang


def test_the_env_examples_in_docs_engines_md_load_without_a_warning(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "engines.md").read_text()
    blocks = re.findall(r"```ini\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    for block, backend in zip(blocks, ("vllm", "sglang"), strict=True):
        (tmp_path / ".env").write_text(block)
        settings = load_settings()
        assert (settings.infer_backend, settings.warnings) == (backend, [])
        assert settings.engine_args(), block


def test_a_box_without_xgrammar_says_how_to_get_response_format():
    """This venv has no xgrammar, as a box that never installed it: a schema is refused as
    not supported (a 400 on /v1), with the command that fixes it."""
    assert importlib.util.find_spec("xgrammar") is None
    with pytest.raises(box_protocol.WrapperError) as refused:
        JsonGrammars().compiled({"type": "object"}, tokenizer=None, vocab_size=10, stop_ids=[])
    assert refused.value.code == wp.E_NOT_SUPPORTED
    assert "pip install xgrammar" in refused.value.message
