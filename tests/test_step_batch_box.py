"""The step batch (remote/step_batch.py, issue 26) on the real tiny model and its LoRA
adapters, against Hugging Face's own `generate` asked one request at a time: rows that join
at different steps, each with its own adapter (or the base), prompt, token budget, stop id
and sampling (temperature, top-k, top-p, repetition penalty, seed), must get exactly the
tokens they get alone, greedy and seeded; a cancelled row leaves at once and the others go
on as they would have."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.box

ROOT = Path(__file__).resolve().parents[1]

# argv: remote dir, the tiny model's folders as JSON. Prints one JSON object.
SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, set_seed
from step_batch import RowSpec, StepBatch, can_batch

tiny = json.loads(sys.argv[2])
tokenizer = AutoTokenizer.from_pretrained(tiny["base"])
model = AutoModelForCausalLM.from_pretrained(tiny["base"], dtype=torch.float32).eval()
peft = PeftModel.from_pretrained(model, tiny["adapter"], adapter_name="a1")
peft.load_adapter(tiny["adapter2"], adapter_name="a2")
peft.eval()

texts = ["Hello, how are you today?", "Tell me about the sea and the ships on it.",
         "One two three", "What is LoRA?", "Hi"]
specs = []
for index, text in enumerate(texts):
    ids = tokenizer(text)["input_ids"]
    sampled = index in (1, 3)
    specs.append(RowSpec(
        prompt_ids=ids, max_new_tokens=[12, 20, 7, 16, 10][index],
        adapter=[None, "a1", "a2", "a1", None][index],
        temperature=0.8 if sampled else 0.0, top_k=20 if sampled else None,
        top_p=0.9 if sampled else None, seed=[None, 7, None, 11, None][index],
        repetition_penalty=1.3 if index == 4 else None))

def alone(spec):
    # Hugging Face's generate, one request at a time, with the row's adapter set on the model.
    if spec.adapter is None:
        peft.base_model.disable_adapter_layers()
    else:
        peft.base_model.enable_adapter_layers()
        peft.set_adapter(spec.adapter)
    config = GenerationConfig(
        max_new_tokens=spec.max_new_tokens, do_sample=bool(spec.temperature),
        temperature=spec.temperature or None, top_k=spec.top_k or None, top_p=spec.top_p,
        repetition_penalty=spec.repetition_penalty, eos_token_id=None, pad_token_id=0)
    if spec.seed is not None:
        set_seed(spec.seed)
    ids = torch.tensor([spec.prompt_ids])
    with torch.inference_mode():
        out = peft.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                            generation_config=config)
    peft.base_model.enable_adapter_layers()
    return out[0, ids.shape[1]:].tolist()

solo = [alone(spec) for spec in specs]
# Row 0 stops at its fourth token, as a stop id (a template's end of turn) would end it.
specs[0].stop_ids = frozenset({solo[0][3]})

# Staggered: a row joins every other step while the others decode; row 2 is cancelled after
# its third token.
batch = StepBatch(peft)
rows, joined, widest = [], 0, 0
while joined < len(specs) or batch.rows:
    if joined < len(specs) and (not batch.rows or len(rows) * 2 <= sum(len(r.made) for r in rows)):
        rows.append(batch.join(specs[joined]))
        joined += 1
    widest = max(widest, len(batch.rows))
    batch.step()
    if len(rows) > 2 and len(rows[2].made) >= 3 and not rows[2].ended:
        batch.cancel(rows[2])
print(json.dumps({"can_batch": can_batch(peft), "solo": solo,
                  "batched": [row.made for row in rows],
                  "finish": [row.finish for row in rows], "widest": widest}))
"""


def test_rows_that_join_and_leave_get_what_they_get_alone(box_python, tiny):
    done = subprocess.run([box_python, "-c", SCRIPT, str(ROOT / "remote"), json.dumps(tiny)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["can_batch"] is True
    assert result["widest"] >= 3, result  # rows really overlapped
    solo, batched = result["solo"], result["batched"]
    assert result["finish"] == ["stop", "length", "cancelled", "length", "length"], result
    for index, (alone, together) in enumerate(zip(solo, batched, strict=True)):
        if index == 0:  # its stop id: up to and including it
            assert together == alone[:alone.index(alone[3]) + 1], result
        elif index == 2:  # cancelled after 3: what it had is what it gets alone
            assert together == alone[:len(together)] and len(together) == 3, result
        else:
            assert together == alone, (index, result)
    assert len({tuple(tokens) for tokens in solo}) == len(solo)  # the rows really differ


# argv: remote dir, the base's folder. Prints one JSON object.
TEXT = r"""
import json, random, sys
sys.path.insert(0, sys.argv[1])
from transformers import AutoTokenizer
from text_stream import IncrementalText

tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])
sizes = []
decode = tokenizer.decode
def counted(ids, **kwargs):
    sizes.append(len(ids))
    return decode(ids, **kwargs)
tokenizer.decode = counted

def stream(ids, skip):
    text = IncrementalText(tokenizer, skip)
    pieces = [text.add(token) for token in ids]
    pieces.append(text.finish())
    return pieces

rng = random.Random(5)
mismatches, held = [], 0
for case in range(400):
    ids = [rng.randrange(len(tokenizer)) for _ in range(rng.randrange(1, 40))]
    for skip in (True, False):
        pieces = stream(ids, skip)
        whole = decode(ids, skip_special_tokens=skip)
        if "".join(pieces) != whole:
            mismatches.append([ids, skip, pieces, whole])
        held += sum(1 for piece in pieces[:-1] if piece.endswith("\ufffd"))
prose = tokenizer(" ".join(["The sea is calm tonight, and the ships come home."] * 40))["input_ids"]
sizes.clear()
text = IncrementalText(tokenizer)
pieces = [text.add(token) for token in prose]
largest = max(sizes)  # per token; finish() decodes the whole once, at the end
pieces.append(text.finish())
print(json.dumps({"mismatches": mismatches[:3], "held": held, "prose_tokens": len(prose),
                  "prose_ok": "".join(pieces) == decode(prose, skip_special_tokens=True),
                  "largest_decode": largest}))
"""


def test_streamed_text_is_the_whole_decode_at_a_few_tokens_a_call(box_python, tiny):
    """IncrementalText (remote/text_stream.py): the pieces of any token sequence add up to
    decoding it whole, with and without special tokens, never showing half a character; and
    a long reply costs a few tokens' decode per token (the batch rows decoded everything
    made so far at every token)."""
    done = subprocess.run([box_python, "-c", TEXT, str(ROOT / "remote"), tiny["base"]],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["mismatches"] == [] and result["held"] == 0, result
    assert result["prose_ok"] and result["prose_tokens"] > 300, result
    assert result["largest_decode"] <= 8, result
