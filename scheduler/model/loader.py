"""YAML loading that remembers where each value came from, so every error reads ``FILE:LINE: field.path: message``.

ruamel.yaml's round-trip loader records the line of every mapping key and sequence item; we keep those positions in
a path -> line table beside the plain data, validate the plain data with pydantic, and translate each pydantic error
location back to the nearest recorded line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from scheduler.model.schema import Topology

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}" if self.field else f"{self.file}:{self.line}: {self.message}"


class LoadError(Exception):
    """A file that cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(map(str, problems)))


@dataclass(frozen=True)
class Loaded:
    """A validated document with its identity: the content hash is the topology version."""

    value: Any
    path: str
    version: str


def _plain(node: Any, loc: Loc, lines: dict[Loc, int]) -> Any:
    """Convert ruamel containers to dict/list, recording the 1-based line of each key and item."""
    if isinstance(node, CommentedMap):
        out = {}
        for key, value in node.items():
            line = node.lc.key(key)[0] + 1
            lines[(*loc, str(key))] = line
            out[str(key)] = _plain(value, (*loc, str(key)), lines)
        return out
    if isinstance(node, CommentedSeq):
        out_list = []
        for i, value in enumerate(node):
            lines[(*loc, i)] = node.lc.item(i)[0] + 1
            out_list.append(_plain(value, (*loc, i), lines))
        return out_list
    return node


def _line_of(loc: Loc, lines: dict[Loc, int]) -> int:
    """Nearest recorded line: the field itself, else its closest ancestor (e.g. a missing key's parent)."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def _field_path(loc: Loc) -> str:
    """`sites.3.pools.0.count` -> `sites[3].pools[0].count`: how operators read paths."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _clean_loc(loc: Loc, data: Any) -> Loc:
    """Drop the union/tag segments pydantic inserts (e.g. 'float', 'function-after[...]') that are not in the file."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not ("[" in part or part in _PYDANTIC_TAGS):
            out.append(part)  # a missing or unknown key: still the operator's field
            node = None
    return tuple(out)


_PYDANTIC_TAGS = {"float", "int", "str", "bool", "none", "list", "dict"}


def read_yaml(text: str, file: str) -> tuple[Any, dict[Loc, int]]:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        raise LoadError([Problem(file, line, "", f"YAML syntax: {e.problem or e.context}")]) from None
    except YAMLError as e:
        raise LoadError([Problem(file, 1, "", f"YAML: {e}")]) from None
    lines: dict[Loc, int] = {}
    data = _plain(doc, (), lines)
    if not isinstance(data, dict):
        raise LoadError([Problem(file, 1, "", "the document must be a mapping of keys to values")])
    return data, lines


def validate_text(text: str, file: str, schema: type[M]) -> M:
    data, lines = read_yaml(text, file)
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        problems = []
        for error in e.errors(include_url=False):
            loc = _clean_loc(tuple(error["loc"]), data)
            problems.append(Problem(file, _line_of(loc, lines), _field_path(loc), _message(error)))
        raise LoadError(sorted(set(problems), key=lambda p: (p.line, p.field))) from None


def _message(error: Any) -> str:
    msg = error["msg"]
    if error["type"] == "extra_forbidden":
        return "unknown key (check its spelling)"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg


def load_file(path: str | Path, schema: type[M]) -> Loaded:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise LoadError([Problem(str(path), 1, "", f"cannot read: {e.strerror or e}")]) from None
    except UnicodeDecodeError as e:
        raise LoadError([Problem(str(path), 1, "", f"not UTF-8 text: {e.reason}")]) from None
    value = validate_text(text, str(path), schema)
    return Loaded(value, str(path), hashlib.sha256(text.encode()).hexdigest()[:12])


def load_topology(path: str | Path) -> Loaded:
    return load_file(path, Topology)
