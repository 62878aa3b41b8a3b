"""A cache bounded by the bytes of what it keeps, not by its number of entries (pure).

What a client sends decides how large a cache entry is (a password, a token), so a
bound on entries alone is no bound on memory: 16,384 entries of 60 KB passwords are
1 GB.  :class:`ByteBudgetCache` counts each entry at the size its owner declares, keeps
the total within ``budget`` by dropping the oldest entries first, and never keeps an
entry larger than ``max_entry`` at all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["ByteBudgetCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteBudgetCache(Generic[K, V]):
    def __init__(self, budget: int, max_entry: int | None = None) -> None:
        if budget <= 0:
            raise ValueError("budget must be > 0 bytes")
        self.budget = budget
        self.max_entry = budget // 64 if max_entry is None else max_entry
        self.nbytes = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        return None if found is None else found[0]

    def put(self, key: K, value: V, size: int) -> bool:
        """Keep ``value`` under ``key``, counted as ``size`` bytes; ``False`` (nothing
        kept) when one entry alone is larger than ``max_entry``."""
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= old[1]
        if size > self.max_entry:
            return False
        self._entries[key] = (value, size)
        self.nbytes += size
        while self.nbytes > self.budget:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.nbytes -= dropped
        return True

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0
