"""YAML text to plain data and the line of every value, built straight from the parser's events.

libyaml's C parser where PyYAML was built with it (PyYAML's own parser otherwise) emits events;
one loop, with no recursion, turns them into dicts, lists and scalars.  That is several times
faster than composing PyYAML's node tree, and it lets the reader refuse what a config never
needs before it costs anything:

- nesting deeper than ``MAX_DEPTH`` (a config nests a handful of levels);
- aliases that add more than ``ALIAS_BUDGET`` values in all (a "billion laughs" file of 2 KB
  expands to 10^9), an alias to the node it sits inside (a cycle), an unknown alias;
- tags beyond YAML's plain types (``!!python/object``, ``!!set``, ``!!timestamp`` ...), keys
  that are not strings, a key given twice, several documents in one file.

Scalars resolve as ``yaml_scalars`` says (YAML 1.2 numbers: ``1e-3`` is a float; timestamps stay
strings).  Merge keys (``<<: *defaults``, or ``<<: [*a, *b]``) are supported, as YAML defines
them: a key given in the mapping wins, then the earlier merged mapping; a merged value keeps the
line it is written on, so an error in it points there.  An alias shares the anchored value (as
PyYAML's constructor does); nothing downstream changes what it reads.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import (AliasEvent, DocumentStartEvent, MappingEndEvent, MappingStartEvent,
                         ScalarEvent, SequenceEndEvent, SequenceStartEvent)

from trainnet.errors import ConfigError
from trainnet.netcfg.yaml_scalars import TAG, plain_scalar, tagged, unsupported_tag

LOADER = getattr(yaml, "CSafeLoader", None) if yaml.__with_libyaml__ else None
LOADER = LOADER or yaml.SafeLoader

MAX_DEPTH = 100
ALIAS_BUDGET = 1_000_000   # values that aliases may add to a document, in all

_MERGE = object()   # the pending key of a mapping after a plain ``<<``


class _Node:
    """A mapping or sequence being read."""

    __slots__ = ("value", "path", "line", "anchor", "first_entry", "start_count", "key",
                 "key_line", "merges", "merge_line", "origins")

    def __init__(self, value, path, line, anchor, first_entry, start_count):
        self.value, self.path, self.line, self.anchor = value, path, line, anchor
        self.first_entry, self.start_count = first_entry, start_count
        self.key = None          # a mapping's pending key (None: the next scalar is a key)
        self.key_line = 0
        self.merges: list = []   # a mapping's merged mappings: (dict, its anchor or None)
        self.merge_line = 0
        self.origins = None      # a merge key's list (<<: [*a, *b]): the anchors of its aliases


class _Anchor:
    __slots__ = ("value", "path", "entries", "size", "open")

    def __init__(self, path):
        self.value, self.path, self.entries, self.size, self.open = None, path, (0, 0), 1, True


def read_yaml(text: str, file: str) -> tuple[Any, dict]:
    """The document in ``text`` as plain data, and a map from each value's path (keys and list
    indices) to its 1-based line.  Every problem is a ConfigError with the file and line."""
    try:
        return _Reader(file).run(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        if "maximum nesting depth" in str(exc.problem):  # libyaml >= 0.2.6 stops at 1000 itself
            raise ConfigError(f"nested deeper than {MAX_DEPTH} levels: not a config", file=file,
                              line=line) from None
        raise ConfigError(f"YAML syntax error: {exc.problem or exc}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}".splitlines()[0], file=file) from None


class _Reader:
    def __init__(self, file: str):
        self.file = file
        self.entries: list[tuple[tuple, int]] = []   # (path, line), in document order
        self.anchors: dict[str, _Anchor] = {}
        self.stack: list[_Node] = []
        self.count = 0       # values read, aliases' expansions included
        self.expanded = 0    # of which added by aliases
        self.root: Any = None
        self.has_root = False

    def error(self, message: str, line: int) -> ConfigError:
        return ConfigError(message, file=self.file, line=line)

    def run(self, text: str) -> tuple[Any, dict]:
        documents = 0
        stack, entries, cache = self.stack, self.entries, {}
        for event in yaml.parse(text, Loader=LOADER):
            kind = type(event)
            if kind is ScalarEvent:
                # the common case inline: a plain value or key in a mapping
                parent = stack[-1] if stack else None
                if (parent is not None and event.implicit[0] and event.tag is None
                        and event.anchor is None and type(parent.value) is dict):
                    text_ = event.value
                    value = cache.get(text_, cache)
                    if value is cache:
                        value = cache[text_] = plain_scalar(text_)
                    key = parent.key
                    if key is None:
                        self.count += 1
                        self.set_key(parent, value, event.start_mark.line + 1, plain=True)
                    elif key is not _MERGE:
                        entries.append((parent.path + (key,), parent.key_line))
                        parent.value[key] = value
                        parent.key = None
                        self.count += 1
                    else:
                        self.scalar(event)
                else:
                    self.scalar(event)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                self.start(event, kind is MappingStartEvent)
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                self.end()
            elif kind is AliasEvent:
                self.alias(event)
            elif kind is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise self.error("holds several YAML documents (---): a config is one",
                                     event.start_mark.line + 1)
        if not self.has_root or self.root is None:
            raise ConfigError("the file is empty", file=self.file)
        return self.root, dict(entries)

    # --- where a new value goes ----------------------------------------------------------------
    def place(self, line: int) -> tuple | None:
        """The path of a value starting at ``line`` (recording its line), or None for a key."""
        if not self.stack:
            self.entries.append(((), line))
            return ()
        parent = self.stack[-1]
        if isinstance(parent.value, list):
            path = parent.path + (len(parent.value),)
            self.entries.append((path, line))
            return path
        if parent.key is None:
            return None
        if parent.key is _MERGE:
            return parent.path + ("<<",)
        path = parent.path + (parent.key,)
        self.entries.append((path, parent.key_line))
        return path

    def attach(self, value: Any, line: int, node: _Node | None = None) -> None:
        """``value`` (read from ``node`` when a container) into its parent."""
        self.count += 1 if not isinstance(value, (dict, list)) else 0
        if not self.stack:
            self.root, self.has_root = value, True
            return
        parent = self.stack[-1]
        if isinstance(parent.value, list):
            parent.value.append(value)
        elif parent.key is None:
            self.set_key(parent, value, line)
        elif parent.key is _MERGE:
            self.merge_value(parent, value, line, node.origins if node is not None else None)
            parent.key = None
        else:
            parent.value[parent.key] = value
            parent.key = None

    def set_key(self, parent: _Node, key: Any, line: int, plain: bool = False) -> None:
        if plain and key == "<<":
            parent.key, parent.merge_line = _MERGE, line
            return
        if not isinstance(key, str):
            raise self.error(f"keys must be strings, got {key!r}", line)
        if key in parent.value:
            raise self.error(f"duplicate key '{key}'", line)
        parent.key, parent.key_line = key, line

    # --- events --------------------------------------------------------------------------------
    def scalar(self, event: ScalarEvent) -> None:
        line = event.start_mark.line + 1
        tag, text = event.tag, event.value
        if tag is None or tag == "!":
            value = plain_scalar(text) if event.implicit[0] and tag is None else text
        else:
            value = tagged(tag, text, line, self.file)
        path = self.place(line)
        if path is None:   # a mapping key
            self.count += 1
            self.set_key(self.stack[-1], value, line, plain=event.implicit[0] and tag is None)
            return
        if event.anchor is not None:
            anchor = self.anchors[event.anchor] = _Anchor(path)
            anchor.value, anchor.open, anchor.entries = value, False, (len(self.entries),) * 2
        self.attach(value, line)

    def start(self, event, mapping: bool) -> None:
        line = event.start_mark.line + 1
        if event.tag is not None and event.tag not in (TAG + "map", TAG + "seq"):
            raise self.error(unsupported_tag(event.tag), line)
        if len(self.stack) >= MAX_DEPTH:
            raise self.error(f"nested deeper than {MAX_DEPTH} levels: not a config", line)
        path = self.place(line)
        if path is None:
            raise self.error("keys must be strings, got a " + ("mapping" if mapping else "list"),
                             line)
        node = _Node({} if mapping else [], path, line, event.anchor, len(self.entries), self.count)
        if not mapping and self.stack and self.stack[-1].key is _MERGE:
            node.origins = []
        self.count += 1
        if event.anchor is not None:
            self.anchors[event.anchor] = _Anchor(path)
        self.stack.append(node)

    def end(self) -> None:
        node = self.stack.pop()
        if node.merges:
            self.apply_merges(node)
        if node.anchor is not None:
            anchor = self.anchors[node.anchor]
            anchor.value, anchor.open = node.value, False
            anchor.entries = (node.first_entry, len(self.entries))
            anchor.size = self.count - node.start_count
        self.attach(node.value, node.line, node)

    def alias(self, event: AliasEvent) -> None:
        line = event.start_mark.line + 1
        anchor = self.anchors.get(event.anchor)
        if anchor is None:
            raise self.error(f"unknown alias '*{event.anchor}' (no '&{event.anchor}' before it)",
                             line)
        if anchor.open:
            raise self.error(f"alias '*{event.anchor}' refers to the node it is inside (a cycle)",
                             line)
        self.expanded += anchor.size
        if self.expanded > ALIAS_BUDGET:
            raise self.error(f"aliases expand this document by more than {ALIAS_BUDGET:,} values "
                             "(a 'billion laughs' file?): refused", line)
        path = self.place(line)
        if path is None:   # an alias as a key
            self.set_key(self.stack[-1], anchor.value, line)
            return
        container = isinstance(anchor.value, (dict, list))
        self.count += anchor.size - (0 if container else 1)
        parent = self.stack[-1] if self.stack else None
        if parent is not None and parent.key is _MERGE:      # <<: *defaults
            self.check_merge(anchor.value, line)
            parent.merges.append((anchor.value, anchor))
            parent.key = None
            return
        if parent is not None and parent.origins is not None:  # <<: [*a, *b]
            parent.origins.append(anchor)
        else:
            self.copy_entries(anchor, path)
        self.attach(anchor.value, line)

    def copy_entries(self, anchor: _Anchor, path: tuple, keys=None) -> None:
        """The lines of an aliased node's values, under the alias's path (``keys``: only those
        top-level keys)."""
        start, stop = anchor.entries
        n = len(anchor.path)
        for p, l in self.entries[start:stop]:
            if keys is None or p[n] in keys:
                self.entries.append((path + p[n:], l))

    # --- merge keys ----------------------------------------------------------------------------
    def check_merge(self, value: Any, line: int) -> None:
        if not isinstance(value, dict):
            raise self.error("a merge key (<<) takes a mapping or a list of mappings, got "
                             + type(value).__name__, line)

    def merge_value(self, parent: _Node, value: Any, line: int, origins) -> None:
        """``<<: {an inline mapping}`` or ``<<: [*a, *b]`` (``<<: *a`` is handled in ``alias``)."""
        items = value if isinstance(value, list) else [value]
        for item in items:
            self.check_merge(item, line)
        by_id = {id(a.value): a for a in origins or []}
        parent.merges.extend((item, by_id.get(id(item))) for item in items)

    def apply_merges(self, node: _Node) -> None:
        explicit, merged = node.value, {}
        for source, origin in node.merges:
            keys = [k for k in source if k not in explicit and k not in merged]
            for k in keys:
                merged[k] = source[k]
                self.entries.append((node.path + (k,), node.merge_line))
            if origin is not None and keys:
                self.copy_entries(origin, node.path, set(keys))
        node.value = {**merged, **explicit}
