"""Make the tiny model, LoRA adapter and a mismatched base that the tests and the demo use.

Run with the box's Python (it needs torch, transformers, tokenizers and peft):
    python make_tiny_model.py OUT_DIR
Writes OUT_DIR/base, OUT_DIR/adapter (LoRA on base), OUT_DIR/adapter2 and adapter3 (two more,
each different), OUT_DIR/other_base (a different shape, so loading `adapter` on it fails) with
OUT_DIR/other_adapter (a LoRA that fits other_base only),
and OUT_DIR/saves: a LlamaFactory saves/ tree of two runs with checkpoints made of those
adapters (the demo's ADAPTER_DIRS; tests/rig/saves_tree.py).
No download: the weights are random (seeded) and the tokenizer is trained here on a few lines
of text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from saves_tree import make_saves  # stdlib only, beside this file

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "Hello, how are you today? I am fine, thank you.",
    "The quick brown fox jumps over the lazy dog.",
    "LlamaFactory fine-tunes large language models with LoRA adapters.",
    "def main():\n    print('hello world')\n    return 0",
    "User: what is the capital of France?\nAssistant: Paris is the capital of France.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and punctuation: ; , . ! ? ( ) [ ] { } < > / \\ | # $ % &",
    "system user assistant <think> </think> thinking reasoning answer question",
]


def make_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>"],
        model_max_length=32768,
    )


def make_model(vocab_size: int, hidden: int, seed: int) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        initializer_range=0.2,  # the default 0.02 makes a random model answer only newlines
    )
    return Qwen2ForCausalLM(config)


def save_model(model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def save_adapter(base_path: Path, path: Path, seed: int) -> None:
    # init_lora_weights=False: with peft's default init, B is zero and the adapter would
    # answer exactly like its base, so no test could tell them apart.
    base = Qwen2ForCausalLM.from_pretrained(base_path)
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                        task_type="CAUSAL_LM", init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(path)


def main(out: Path) -> None:
    tokenizer = make_tokenizer()
    vocab = len(tokenizer)
    save_model(make_model(vocab, hidden=64, seed=0), tokenizer, out / "base")
    save_model(make_model(vocab, hidden=32, seed=1), tokenizer, out / "other_base")
    save_adapter(out / "base", out / "adapter", seed=2)
    save_adapter(out / "base", out / "adapter2", seed=3)
    save_adapter(out / "base", out / "adapter3", seed=4)
    save_adapter(out / "other_base", out / "other_adapter", seed=5)  # fits other_base only
    adapters = [str(out / name) for name in ("adapter", "adapter2", "adapter3")]
    make_saves(out / "saves", str(out / "base"), adapters=adapters, broken=False)
    (out / "tiny.json").write_text(json.dumps({"vocab": vocab, "template": "qwen"}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
