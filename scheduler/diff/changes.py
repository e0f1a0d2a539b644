"""The edit itself: entities added, removed or changed between two topologies, each with its line in the file.

Entities are matched by identity, not position (a site by its id, a pool by `site/accelerator#j` as the ledger
and the metrics name it, a link by its ends), so reordering a list is not reported as a change. Comments and
formatting are not part of the validated topology, so an edit that only touches them lists nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from scheduler.model.loader import Loc, read_yaml
from scheduler.model.schema import Topology
from scheduler.network import link_id


class Action(str, Enum):
    added = "added"
    removed = "removed"
    changed = "changed"


@dataclass(frozen=True)
class FieldChange:
    field: str  # relative to the entity, e.g. `status` or `segments[1].status`
    old: Any  # None where the field is absent
    new: Any
    line: int  # in NEW


@dataclass(frozen=True)
class Change:
    kind: str  # site, pool, link, cable, tariff, region, model, accelerator, node, data_class, settings, ...
    key: str
    action: Action
    file: str  # NEW, or OLD for a removal
    line: int
    fields: tuple[FieldChange, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Side:
    """One topology with the line of every key and list item of its file."""

    topology: Topology
    file: str
    lines: dict[Loc, int]

    @classmethod
    def read(cls, topology: Topology, file: str) -> Side:
        _, lines = read_yaml(Path(file).read_text(encoding="utf-8"), file)
        return cls(topology, file, lines)

    def line(self, loc: Loc) -> int:
        """The line of `loc`, else of its nearest recorded ancestor (a default has no line of its own)."""
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return 1


# (kind, list field in the topology); pools are handled beside their sites.
LISTS: tuple[tuple[str, str], ...] = (
    ("accelerator", "accelerators"), ("model", "models"), ("tariff", "tariffs"),
    ("data_class", "data_classes"), ("site", "sites"), ("node", "nodes"), ("region", "regions"),
    ("link", "links"), ("cable", "cables"),
)
TOP_FIELDS = ("name", "description")


def _entities(side: Side, field: str) -> dict[str, tuple[Loc, dict]]:
    """key -> (location in the file, plain value) for one list of the topology, a site's pools left out."""
    out: dict[str, tuple[Loc, dict]] = {}
    for i, item in enumerate(getattr(side.topology, field)):
        value = item.model_dump(mode="json")
        if field == "links":
            key = link_id(item.a, item.b)
            n = 2
            while key in out:  # parallel links between the same two nodes
                key = f"{link_id(item.a, item.b)}#{n}"
                n += 1
        else:
            key = item.id
        if field == "sites":
            value.pop("pools")
        out[key] = ((field, i), value)
    return out


def _pools(side: Side) -> dict[str, tuple[Loc, dict]]:
    return {f"{s.id}/{p.accelerator}#{j}": (("sites", i, "pools", j), p.model_dump(mode="json"))
            for i, s in enumerate(side.topology.sites) for j, p in enumerate(s.pools)}


def _path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def field_changes(old: Any, new: Any, loc: Loc, rel: tuple[str | int, ...],
                  new_side: Side) -> Iterator[FieldChange]:
    """Leaf differences between two plain values; lists of equal length are compared item by item."""
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            yield from field_changes(old.get(key), new.get(key), (*loc, key), (*rel, key), new_side)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            yield from field_changes(a, b, (*loc, i), (*rel, i), new_side)
    else:
        yield FieldChange(_path(rel), old, new, new_side.line(loc))


def _compare(kind: str, old: dict[str, tuple[Loc, dict]], new: dict[str, tuple[Loc, dict]], old_side: Side,
             new_side: Side) -> Iterator[Change]:
    for key, (loc, value) in new.items():
        if key not in old:
            yield Change(kind, key, Action.added, new_side.file, new_side.line(loc))
            continue
        fields = tuple(field_changes(old[key][1], value, loc, (), new_side))
        if fields:
            yield Change(kind, key, Action.changed, new_side.file, fields[0].line, fields)
    for key, (loc, _) in old.items():
        if key not in new:
            yield Change(kind, key, Action.removed, old_side.file, old_side.line(loc))


def changes(old: Side, new: Side) -> list[Change]:
    """Every entity the edit adds, removes or changes, in NEW's line order (removals last, in OLD's)."""
    out: list[Change] = []
    a = {f: getattr(old.topology, f) for f in TOP_FIELDS}
    b = {f: getattr(new.topology, f) for f in TOP_FIELDS}
    fields = tuple(field_changes(a, b, (), (), new))
    if fields:
        out.append(Change("topology", new.topology.name, Action.changed, new.file, fields[0].line, fields))
    settings = tuple(field_changes(old.topology.settings.model_dump(mode="json"),
                                   new.topology.settings.model_dump(mode="json"), ("settings",), (), new))
    if settings:
        out.append(Change("settings", "settings", Action.changed, new.file, settings[0].line, settings))
    for kind, field in LISTS:
        out += _compare(kind, _entities(old, field), _entities(new, field), old, new)
        if field == "sites":
            out += _compare("pool", _pools(old), _pools(new), old, new)
    return sorted(out, key=lambda c: (c.action is Action.removed, c.line))
