"""Benchmarking a checkpoint through the gateway with lm-evaluation-harness (issue 25): the
real `lm_eval` (its own venv, tests/rig/lm_eval_env.sh) run as users run it, against `lfgate
serve` /v1 -> asyncssh -> the real sshd -> the real LlamaFactory, on the `words` adapter that
LlamaFactory trained on the tiny base (tests/rig/train_adapters.sh). The tasks are local files
(tests/rig/lm_eval_tasks/): the adapter's trained prompts as a multiple-choice task scored by
loglikelihood through /v1/completions (`local-completions`: echo and logprobs), and as a
generation task through /v1/chat/completions (`local-chat-completions`). lm-eval runs offline,
with a fresh HF_HOME: no hub, no network but the gateway's port."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.ui_rig import start_real_gateway

pytestmark = pytest.mark.box

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "tests" / "rig" / "lm_eval_tasks"
ROWS = TASKS / "words.jsonl"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "NO_PROXY": "127.0.0.1,localhost",
           "no_proxy": "127.0.0.1,localhost"}


def rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in ROWS.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def lm_eval_python() -> str:
    """lm-eval's venv: built once from requirements/lm-eval.txt and cached."""
    built = subprocess.run(["bash", str(ROOT / "tests" / "rig" / "lm_eval_env.sh")],
                           capture_output=True, text=True, check=False)
    if built.returncode != 0:
        pytest.fail(f"lm_eval_env.sh failed:\n{built.stderr[-4000:]}")
    return built.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def gateway(sshd, box_python, tiny, trained, tmp_path_factory):
    """`default` is the words adapter on the tiny base, as `make run` serves it; the trained
    folder is ADAPTER_DIRS, so `words` is listed by its own id too, beside `base`."""
    words = trained["adapters"]["words"]["path"]
    process = start_real_gateway(sshd, box_python, tiny, tmp_path_factory.mktemp("gw-lm-eval"),
                                 env={"ADAPTER_PATH": words,
                                      "ADAPTER_DIRS": str(Path(words).parent),
                                      "RESCAN_INTERVAL": "0"})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def model_ids(gateway) -> dict[str, str]:
    """The ids a user picks from /v1/models: the words adapter's own, and the bare base
    (once the first scan of ADAPTER_DIRS has ended: it runs in the background from start-up)."""
    gateway.scanned_models()
    listed = gateway.http.get("/v1/models")
    assert listed.status_code == 200, listed.text
    ids = [model["id"] for model in listed.json()["data"]]
    words = [i for i in ids if i.endswith("words")]
    assert len(words) == 1 and "base" in ids, ids
    return {"words": words[0], "base": "base"}


def run_lm_eval(python: str, folder: Path, *, model: str, model_args: dict[str, str],
                task: str, chat: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`python -m lm_eval run ...` as a user types it; its results (results_*.json's
    results[task]) and its logged samples (one per doc, in doc order)."""
    folder.mkdir(parents=True)
    out = folder / "out"
    command = [python, "-m", "lm_eval", "run", "--model", model,
               "--model_args", ",".join(f"{k}={v}" for k, v in model_args.items()),
               "--tasks", task, "--include_path", str(TASKS),
               "--output_path", str(out), "--log_samples",
               *(["--apply_chat_template"] if chat else [])]
    env = {**os.environ, **OFFLINE, "HF_HOME": str(folder / "hf-home")}
    ran = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                         timeout=480, check=False)
    (folder / "lm_eval.log").write_text(ran.stdout + ran.stderr)
    assert ran.returncode == 0, f"lm_eval exited {ran.returncode}:\n{ran.stderr[-6000:]}"
    [results] = out.glob("*/results_*.json")
    [samples] = out.glob(f"*/samples_{task}_*.jsonl")
    logged = sorted((json.loads(line) for line in samples.read_text().splitlines()),
                    key=lambda sample: sample["doc_id"])
    return json.loads(results.read_text())["results"][task], logged


# Run by the box's Python: each question as LlamaFactory's template encodes it for a reply.
SPELL_PROMPTS = """
import json, sys
from transformers import AutoTokenizer
from llamafactory.data.template import get_template_and_fix_tokenizer
from llamafactory.hparams import DataArguments
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template=sys.argv[2]))
prompts = [tokenizer.decode(template.encode_oneturn(
    tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": ""}])[0])
    for q in json.loads(sys.argv[3])]
print(json.dumps(prompts))
"""


def test_the_task_rows_are_the_words_adapters_training(trained, box_python, tiny):
    """words.jsonl holds what the words adapter was trained on: each question, its trained
    answer (what greedy decoding gives, trained.json says), the five answers as choices, and the
    prompt spelled exactly as the box's LlamaFactory spells it for the qwen template (default
    system prompt and the assistant turn opened), so the multiple-choice task scores each choice
    as the reply the chat path would give."""
    cases = trained["adapters"]["words"]["cases"]
    answers = [case["answer"] for case in cases]
    assert [(row["question"], row["answer"]) for row in rows()] == [
        (case["messages"][0]["content"], case["answer"]) for case in cases]
    for index, row in enumerate(rows()):
        assert row["choices"] == answers and row["gold"] == index
    spelled = subprocess.run(
        [box_python, "-c", SPELL_PROMPTS, tiny["base"], tiny["template"],
         json.dumps([row["question"] for row in rows()])],
        capture_output=True, text=True, check=False, timeout=300)
    assert spelled.returncode == 0, spelled.stderr[-4000:]
    assert [row["prompt"] for row in rows()] == json.loads(spelled.stdout.splitlines()[-1])


def scored(run: tuple[dict[str, Any], list[dict[str, Any]]]) -> list[list[float]]:
    """Each doc's loglikelihood of each choice, from the logged samples."""
    return [[float(logprob) for logprob, _greedy in sample["filtered_resps"]]
            for sample in run[1]]


@pytest.fixture(scope="module")
def multiple_choice(lm_eval_python, gateway, model_ids, tiny, tmp_path_factory):
    """run(name, **model_args): lm-eval's multiple-choice task through /v1/completions on
    that model (`local-completions`, the checkpoint's tokenizer counting the prompt's tokens to
    find where each choice starts); each run once per module."""
    runs: dict[tuple, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    folder = tmp_path_factory.mktemp("lm-eval-mc")

    def run(name: str, **extra: str):
        key = (name, *sorted(extra.items()))
        if key not in runs:
            runs[key] = run_lm_eval(
                lm_eval_python, folder / str(len(runs)), model="local-completions",
                task="lfgate_words_mc",
                model_args={"base_url": f"{gateway.url}/v1/completions",
                            "model": model_ids[name], "tokenizer": tiny["base"],
                            "tokenizer_backend": "huggingface", "num_concurrent": "1",
                            "max_retries": "1", **extra})
        return runs[key]

    return run


def test_multiple_choice_by_loglikelihood_through_completions(multiple_choice):
    """Each choice is scored by the logprobs of its tokens, echoed by /v1/completions after
    the prompt (sent as text here, tokenized_requests=False): the words adapter picks its
    trained answer every time (acc 1.0); the bare base, random, does not (the control: the id
    reaches another model)."""
    results, samples = words = multiple_choice("words", tokenized_requests="False")
    assert results["acc,none"] == 1.0, results
    assert len(samples) == len(rows())
    for loglikelihoods, row in zip(scored(words), rows(), strict=True):
        assert len(loglikelihoods) == len(row["choices"])
        assert all(value < 0 for value in loglikelihoods), loglikelihoods
        assert max(range(len(loglikelihoods)), key=loglikelihoods.__getitem__) == row["gold"]
    base = multiple_choice("base", tokenized_requests="False")
    assert base[0]["acc,none"] < 1.0, base[0]
    assert scored(base) != scored(words)


def test_token_id_prompts_score_as_their_text_does(multiple_choice):
    """lm-eval's default (tokenized_requests=True) sends each prompt as token ids: the same
    tokens as the text, so the same scores."""
    results, _samples = as_ids = multiple_choice("words")
    assert results["acc,none"] == 1.0, results
    as_text = multiple_choice("words", tokenized_requests="False")
    for by_ids, by_text in zip(scored(as_ids), scored(as_text), strict=True):
        assert by_ids == pytest.approx(by_text, abs=1e-4)


def test_generation_through_chat_completions(lm_eval_python, gateway, model_ids, tmp_path):
    """`local-chat-completions` with --apply_chat_template sends each question as a user
    message (greedy, its stop and max_tokens from the task): the words adapter's replies are
    its trained answers exactly (exact_match 1.0); the bare base's are not."""
    for name, expected in (("words", 1.0), ("base", 0.0)):
        results, samples = run_lm_eval(
            lm_eval_python, tmp_path / name, model="local-chat-completions",
            task="lfgate_words_chat", chat=True,
            model_args={"base_url": f"{gateway.url}/v1/chat/completions",
                        "model": model_ids[name], "num_concurrent": "1", "max_retries": "1"})
        assert results["exact_match,none"] == expected, (name, results, samples)
        assert len(samples) == len(rows())
        if name == "words":
            assert [s["filtered_resps"][0] for s in samples] == [r["answer"] for r in rows()]
