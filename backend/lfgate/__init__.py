"""LF Gate: chat with LlamaFactory models and LoRA adapters on a GPU box reached over SSH."""

__version__ = "0.1.0"
