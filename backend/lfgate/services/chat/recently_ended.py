"""What ended a little while ago, kept so a reader that comes back late still finds it: a
page that reattaches just after its reply ended replays the events it missed from memory
rather than the stored end. Bounded by age and by count, so memory stays flat."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

KEEP_S = 300.0  # five minutes: a laptop's short sleep, a slow reload
KEEP_MOST = 256
T = TypeVar("T")


class RecentlyEnded(Generic[T]):
    def __init__(self, keep_s: float = KEEP_S, keep_most: int = KEEP_MOST) -> None:
        self._keep_s = keep_s
        self._keep_most = keep_most
        self._items: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def add(self, key: str, item: T) -> None:
        self._items[key] = (time.monotonic(), item)
        self._items.move_to_end(key)
        self._prune()

    def get(self, key: str) -> T | None:
        self._prune()
        entry = self._items.get(key)
        return None if entry is None else entry[1]

    def _prune(self) -> None:
        oldest = time.monotonic() - self._keep_s
        while self._items and (len(self._items) > self._keep_most
                               or next(iter(self._items.values()))[0] < oldest):
            self._items.popitem(last=False)
