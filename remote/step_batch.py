"""Continuous batching on one loaded base: rows join and leave between decode steps (issue 26).

Why a loop of our own (docs/research/batching.md has the reading): transformers' continuous
batching packs every request into one row, so peft cannot give each its own adapter, and it
has no per-request seed, penalties or stop strings; one `generate` call over several rows
(protocol 4's batch) cannot take a row that arrives while it runs, and its rows cannot leave.

Here a row is prefilled alone (a batch of one, so its first token is exactly the one it gets
alone), then its KV cache joins the running batch, left-padded to the batch's length. Every
step decodes one token for every live row: one forward with each row's adapter (peft's
`adapter_names`; "__base__" for none), its own position ids, and its own sampling (the
processors `generate` would build for its parameters, and its own `torch.Generator` for a
seed, which draws what the global generator draws after `set_seed`). A row that ends (a stop
token, its token budget, a cancel) leaves at once, and the padding no live row needs is cut.

Stand-alone (torch, transformers, peft: the box's); the wrapper drives it from one thread.
Caches with sliding-window or other non-plain layers are not batched (`can_batch` says).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BASE = "__base__"  # peft's name for "no adapter" in adapter_names
FINISH_STOP, FINISH_LENGTH, FINISH_CANCELLED = "stop", "length", "cancelled"


@dataclass
class RowSpec:
    """One request as the batch needs it: token ids, not text (the template is the caller's)."""

    prompt_ids: list[int]
    max_new_tokens: int
    stop_ids: frozenset[int] = frozenset()
    adapter: str | None = None  # the adapter's name in the PeftModel; None: the base
    temperature: float = 0.0  # 0: greedy
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None


@dataclass
class Row:
    spec: RowSpec
    made: list[int] = field(default_factory=list)
    finish: str | None = None  # set once the row has ended
    _processors: Any = None
    _generator: Any = None
    _history: Any = None  # the prompt and what was made, for the processors ([1, n])

    @property
    def ended(self) -> bool:
        return self.finish is not None


def can_batch(model: Any) -> bool:
    """Only plain causal attention in every layer: sliding-window and hybrid caches keep
    other shapes (their rows run alone)."""
    config = getattr(model, "config", None)
    kinds = getattr(config, "layer_types", None) or ["full_attention"]
    sliding = getattr(config, "sliding_window", None) \
        if getattr(config, "use_sliding_window", True) else None
    return all(kind == "full_attention" for kind in kinds) and not sliding


class StepBatch:
    """The running batch on one model (a PeftModel when adapters are loaded). Not thread
    safe: one thread joins, steps and cancels."""

    def __init__(self, model: Any) -> None:
        import torch

        self._torch = torch
        self.model = model
        self.device = next(model.parameters()).device
        self.rows: list[Row] = []
        self._cache: Any = None  # the batch's DynamicCache, a row per live row
        self._mask: Any = None  # [rows, columns]: 1 where a row has a token, 0 padding

    @property
    def _peft(self) -> bool:
        """Whether rows name their adapters: read from the model, which the wrapper may
        wrap in a PeftModel while rows are in flight (its first adapter)."""
        return hasattr(self.model, "peft_config")

    # -- rows in and out ------------------------------------------------------------------

    def join(self, spec: RowSpec) -> Row:
        """Prefill `spec` alone and take its first token; it decodes with the batch from the
        next step. A row that ends at once (its first token stops it, or no budget) never
        enters the batch."""
        torch = self._torch
        from transformers import DynamicCache

        row = Row(spec)
        row._processors = self._processors(spec)
        if spec.seed is not None:
            row._generator = torch.Generator(device="cpu").manual_seed(spec.seed)
        if spec.max_new_tokens <= 0:
            row.finish = FINISH_LENGTH
            return row
        ids = torch.tensor([spec.prompt_ids], device=self.device)
        row._history = ids
        cache = DynamicCache(config=getattr(self.model, "config", None))
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids),
                             position_ids=torch.arange(ids.shape[1], device=self.device)[None],
                             past_key_values=cache, use_cache=True, logits_to_keep=1,
                             **self._adapters([spec.adapter]))
        self._take(row, out.logits[:, -1, :])
        if not row.ended:
            self._merge(out.past_key_values, ids.shape[1])
            self.rows.append(row)
        return row

    def cancel(self, row: Row) -> None:
        """End a row now (Stop pressed, client gone): it leaves before the next step."""
        if not row.ended:
            row.finish = FINISH_CANCELLED
            self._leave()

    def step(self) -> list[Row]:
        """One token for every live row; the rows that got one (some may have ended with
        it: they have left)."""
        torch = self._torch
        if not self.rows:
            return []
        last = torch.tensor([[row.made[-1]] for row in self.rows], device=self.device)
        ones = torch.ones((len(self.rows), 1), dtype=self._mask.dtype, device=self.device)
        self._mask = torch.cat([self._mask, ones], dim=1)
        positions = self._mask.sum(dim=1, keepdim=True) - 1
        with torch.inference_mode():
            out = self.model(input_ids=last, attention_mask=self._mask,
                             position_ids=positions, past_key_values=self._cache,
                             use_cache=True,
                             **self._adapters([row.spec.adapter for row in self.rows]))
        logits = out.logits[:, -1, :]
        stepped = list(self.rows)
        for index, row in enumerate(stepped):
            row._history = torch.cat([row._history, last[index:index + 1]], dim=1)
            self._take(row, logits[index:index + 1])
        self._leave()
        return stepped

    # -- inside ----------------------------------------------------------------------------

    def _adapters(self, names: list[str | None]) -> dict[str, Any]:
        if not self._peft:
            return {}
        return {"adapter_names": [name or BASE for name in names]}

    def _processors(self, spec: RowSpec) -> Any:
        """The processors `generate` builds for these parameters, in its order (the
        repetition penalty on the history, then temperature, top-k, top-p)."""
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        processors = LogitsProcessorList()
        if spec.repetition_penalty not in (None, 1.0):
            processors.append(RepetitionPenaltyLogitsProcessor(spec.repetition_penalty))
        if spec.temperature:
            if spec.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(spec.temperature))
            if spec.top_k:
                processors.append(TopKLogitsWarper(spec.top_k))
            if spec.top_p is not None and spec.top_p < 1.0:
                processors.append(TopPLogitsWarper(spec.top_p))
        return processors

    def _take(self, row: Row, logits: Any) -> None:
        """Choose the row's next token from its logits ([1, vocab]) and see if it ends."""
        torch = self._torch
        scores = row._processors(row._history, logits.float())
        if row.spec.temperature:
            probs = torch.nn.functional.softmax(scores, dim=-1)
            token = int(torch.multinomial(probs, num_samples=1, generator=row._generator)[0, 0])
        else:
            token = int(torch.argmax(scores, dim=-1)[0])
        row.made.append(token)
        if token in row.spec.stop_ids:
            row.finish = FINISH_STOP
        elif len(row.made) >= row.spec.max_new_tokens:
            row.finish = FINISH_LENGTH

    def _merge(self, cache: Any, length: int) -> None:
        """Add a prefilled row's cache to the batch's, left-padding the shorter side."""
        torch = self._torch
        mask = torch.ones((1, length), dtype=torch.long, device=self.device)
        if self._cache is None:
            self._cache, self._mask = cache, mask
            return
        width = max(self._mask.shape[1], length)
        pad = torch.nn.functional.pad
        for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, width), _left_pad(theirs.keys, width)])
            mine.values = torch.cat([_left_pad(mine.values, width),
                                     _left_pad(theirs.values, width)])
        self._mask = torch.cat([pad(self._mask, (width - self._mask.shape[1], 0)),
                                pad(mask, (width - length, 0))])

    def _leave(self) -> None:
        """Drop the rows that ended, and the padding columns no live row uses."""
        torch = self._torch
        keep = [i for i, row in enumerate(self.rows) if not row.ended]
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self._cache = self._mask = None
            return
        index = torch.tensor(keep, device=self.device)
        self._cache.batch_select_indices(index)
        self._mask = self._mask[index]
        used = int(torch.nonzero(self._mask.any(dim=0))[0, 0])
        if used:
            for layer in self._cache.layers:
                layer.keys = layer.keys[:, :, used:, :]
                layer.values = layer.values[:, :, used:, :]
            self._mask = self._mask[:, used:]


def _left_pad(tensor: Any, width: int) -> Any:
    """[rows, heads, columns, dim] padded with zeros on the left up to `width` columns."""
    import torch

    missing = width - tensor.shape[2]
    return torch.nn.functional.pad(tensor, (0, 0, missing, 0)) if missing else tensor
