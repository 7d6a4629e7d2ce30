"""A reply scored against its reference with the maintained scorers, not home-made ones:
sacrebleu's sentence BLEU and chrF, and Google's rouge-score for ROUGE-L (F-measure), all on
a 0-100 scale.

CJK text: sacrebleu's BLEU takes its Chinese tokenizer ("zh"), which splits CJK characters
(chrF works on characters anyway); rouge-score's default tokenizer keeps only a-z and 0-9,
so a CJK reference gets a tokenizer that keeps each CJK character as a token and splits the
rest on word boundaries. Scoring is CPU work: callers run it off the event loop. The scorers
are imported on first use (rouge-score pulls in nltk: a third of a second at start-up).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

# CJK ideographs, kana and hangul: a reference holding any is scored as CJK text.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_CJK_TOKENS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"
                         r"|[^\W\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")


@dataclass(frozen=True)
class Scores:
    bleu: float
    chrf: float
    rouge_l: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


class CjkTokenizer:
    """For rouge-score: each CJK character a token, other words lower-cased."""

    def tokenize(self, text: str) -> list[str]:
        return [token.lower() for token in _CJK_TOKENS.findall(text)]


def is_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


@cache
def _rouge(cjk: bool) -> Any:
    from rouge_score import rouge_scorer

    if cjk:
        return rouge_scorer.RougeScorer(["rougeL"], tokenizer=CjkTokenizer())
    return rouge_scorer.RougeScorer(["rougeL"])


def score(reply: str, reference: str) -> Scores:
    import sacrebleu

    cjk = is_cjk(reference)
    bleu = sacrebleu.sentence_bleu(reply, [reference], tokenize="zh" if cjk else "13a")
    chrf = sacrebleu.sentence_chrf(reply, [reference])
    rouge = _rouge(cjk).score(reference, reply)["rougeL"]
    return Scores(bleu.score, chrf.score, rouge.fmeasure * 100)
