"""User class maps: rename, merge, add (contempt) or drop classes of a source.

A class map is {source class name -> target class name | "drop"}. Names on both sides are
matched case-insensitively through the synonym table, so "Anger", "anger" and "angry" are the
same key. Source names the map does not mention keep their canonical class.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import ConfigError
from .classes import CLASS_NAMES, SYNONYMS, canonical_class
from .dataset import Split

DROP = "drop"
_NAME = re.compile(r"^[\w\- ]+$")


def _normalise(name: str) -> str:
    key = name.strip().lower()
    return SYNONYMS.get(key, key)


def parse_class_map(text: str) -> dict[str, str]:
    """Parse "anger=angry,contempt=contempt,neutral=drop" into {"anger": "angry", ...}."""
    mapping: dict[str, str] = {}
    for entry in text.split(","):
        if not entry.strip():
            continue
        key, sep, target = entry.partition("=")
        key, target = key.strip(), target.strip()
        if not sep or not key or not target or not _NAME.match(key) or not _NAME.match(target):
            raise ConfigError(
                f"--class-map: entry '{entry.strip()}' is not NAME=TARGET "
                "(e.g. anger=angry,contempt=contempt,neutral=drop)"
            )
        if key.lower() in mapping:
            raise ConfigError(f"--class-map: '{key}' is mapped twice; keep one entry per name")
        mapping[key.lower()] = target.lower()
    if not mapping:
        raise ConfigError("--class-map: no NAME=TARGET entries found (e.g. anger=angry,neutral=drop)")
    return mapping


class ClassResolver:
    """Resolves source class names to target names under an optional class map."""

    def __init__(self, class_map: dict[str, str] | None, where: str):
        self.where = where
        self.map: dict[str, str | None] | None = None
        self.used: set[str] = set()
        if class_map is None:
            return
        self.map = {}
        for key, target in class_map.items():
            if not isinstance(key, str) or not isinstance(target, str) or not key.strip() or not target.strip():
                raise ConfigError(f"class map entry {key!r}: {target!r} must map a name to a name or 'drop'")
            norm_key = _normalise(key)
            norm_target = None if target.strip().lower() == DROP else _normalise(target)
            if norm_key in self.map and self.map[norm_key] != norm_target:
                raise ConfigError(f"class map maps '{key}' (same class as another entry) to two targets")
            self.map[norm_key] = norm_target

    def resolve(self, name: str, keep_unknown: bool = False) -> str | None:
        """Target class of a source name, None when the map drops it.

        Names neither mapped nor known raise canonical_class's DataError, unless keep_unknown
        (for files that declare their own class names, e.g. an npz with "contempt").
        """
        key = _normalise(name)
        if self.map is not None and key in self.map:
            self.used.add(key)
            return self.map[key]
        if keep_unknown and key not in SYNONYMS:
            return key
        return canonical_class(name, self.where)

    def check_all_used(self, found: list[str]) -> None:
        """A map entry that matched nothing is almost always a typo: say so."""
        if self.map is None:
            return
        unused = sorted(set(self.map) - self.used)
        if unused:
            raise ConfigError(
                f"{self.where}: class map entr{'y' if len(unused) == 1 else 'ies'} "
                f"{', '.join(repr(u) for u in unused)} match no class (classes found: {', '.join(found)})"
            )


def ordered_class_names(targets: set[str]) -> tuple[str, ...]:
    """Canonical classes in canonical order first, then any extra classes sorted by name."""
    canonical = [c for c in CLASS_NAMES if c in targets]
    return tuple(canonical + sorted(targets - set(CLASS_NAMES)))


def remap_classes(
    splits: dict[str, Split], class_names: tuple[str, ...], class_map: dict[str, str], where: str
) -> tuple[dict[str, Split], tuple[str, ...], dict[str, int]]:
    """Apply a class map to labelled arrays; returns (splits, new class names, dropped count per split).

    Soft targets are summed into their target columns (dropped columns removed) and renormalised.
    """
    resolver = ClassResolver(class_map, where)
    targets = [resolver.resolve(name, keep_unknown=True) for name in class_names]
    resolver.check_all_used(list(class_names))
    new_names = ordered_class_names({t for t in targets if t is not None})
    if not new_names:
        raise ConfigError(f"{where}: the class map drops every class; keep at least one")
    new_index = np.array([new_names.index(t) if t is not None else -1 for t in targets], dtype=np.int64)
    column_map = np.zeros((len(class_names), len(new_names)), dtype=np.float32)
    for src, dst in enumerate(new_index):
        if dst >= 0:
            column_map[src, dst] = 1.0
    new_splits: dict[str, Split] = {}
    dropped: dict[str, int] = {}
    for name, split in splits.items():
        y = new_index[split.y]
        keep = y >= 0
        dropped[name] = int((~keep).sum())
        soft = None
        if split.soft is not None:
            soft = split.soft[keep] @ column_map
            soft /= np.maximum(soft.sum(axis=1, keepdims=True), 1e-12)
        new_splits[name] = Split(split.x[keep], y[keep], soft)
    return new_splits, new_names, dropped
