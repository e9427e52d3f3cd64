"""Disjoint sets, used where values or channels must share one threshold or one scale."""

from __future__ import annotations

from collections.abc import Hashable, Iterable


class UnionFind:
    """Classes of hashable keys.  A union keeps the smallest root (by key order), so the
    classes and their representatives do not depend on the order of the unions."""

    def __init__(self, keys: Iterable[Hashable] = ()):
        self.parent: dict = {k: k for k in keys}

    def add(self, key) -> None:
        self.parent.setdefault(key, key)

    def find(self, key):
        p = self.parent
        root = key
        while p[root] != root:
            root = p[root]
        while p[key] != root:  # path compression
            p[key], key = root, p[key]
        return root

    def union(self, keys: Iterable) -> None:
        """Put every key in ``keys`` into one class."""
        roots = sorted({self.find(k) for k in keys})
        for r in roots[1:]:
            self.parent[r] = roots[0]

    def classes(self) -> dict:
        """root -> members, members in insertion order."""
        out: dict = {}
        for k in self.parent:
            out.setdefault(self.find(k), []).append(k)
        return out
