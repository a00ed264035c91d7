"""A YAML loader that cannot be made to hurt: budgets on alias expansion and nesting, no recursive aliases.

PyYAML's SafeLoader builds only plain data, but it shares one node among all the aliases of an anchor: a 388-byte
"billion laughs" file composes to a few nodes and becomes billions once anything walks it, and 900-deep nesting ends
in a RecursionError. This loader counts every node as it would be after expanding aliases, and stops at the budget.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.error import MarkedYAMLError
from yaml.events import AliasEvent, MappingStartEvent, ScalarEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.resolver import Resolver

# A real config has a few hundred nodes and nests six deep; these leave ample room and keep the worst case small.
MAX_NODES = 100_000
MAX_DEPTH = 64
# Python refuses to parse integers longer than 4,300 digits with a ValueError; no config value needs more than 30.
MAX_INT_DIGITS = 100

try:  # libyaml's parser in C when available (same events, same marks), else PyYAML's own
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - depends on how PyYAML was built

    class _Parser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


class YamlBudgetError(MarkedYAMLError):
    """The YAML would expand past a budget (nodes, depth) or refers to itself: refused before it is built."""


class _BudgetComposer(Composer):
    """Composer that counts expanded nodes (an alias costs its anchor's whole subtree) and nesting depth."""

    def __init__(self) -> None:
        super().__init__()
        self._expanded = 0
        self._depth = 0
        self._anchor_sizes: dict[str, int] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event: Any = self.peek_event()  # type: ignore[attr-defined]  # the parser half of the loader has it
        mark: Any = event.start_mark
        if isinstance(event, AliasEvent):
            if event.anchor in self.anchors and event.anchor not in self._anchor_sizes:
                raise YamlBudgetError(None, None, f"alias *{event.anchor} refers to a node that contains it", mark)
            self._spend(self._anchor_sizes.get(str(event.anchor), 0), mark)
            return super().compose_node(parent, index)
        if isinstance(event, SequenceStartEvent | MappingStartEvent):
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise YamlBudgetError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        start = self._expanded
        self._spend(1, mark)
        node = super().compose_node(parent, index)
        if not isinstance(event, ScalarEvent):
            self._depth -= 1
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._anchor_sizes[anchor] = self._expanded - start
        return node

    def _spend(self, nodes: int, mark: Any) -> None:
        self._expanded += nodes
        if self._expanded > MAX_NODES:
            raise YamlBudgetError(
                None,
                None,
                f"more than {MAX_NODES:,} values once aliases are expanded (an alias bomb?)",
                mark,
            )


class _StrictConstructor(SafeConstructor):
    """SafeConstructor that refuses duplicate keys and turns out-of-range scalars into YAML errors with a mark."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {key_node.value!r}",
                        key_node.start_mark,
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        if sum(c.isdigit() for c in str(node.value)) > MAX_INT_DIGITS:
            raise ConstructorError(None, None, f"an integer longer than {MAX_INT_DIGITS} digits", node.start_mark)
        return int(super().construct_yaml_int(node))

    def construct_yaml_timestamp(self, node: ScalarNode) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError):
            raise ConstructorError(None, None, "a date or time that does not exist", node.start_mark) from None


_StrictConstructor.yaml_constructors = {
    **SafeConstructor.yaml_constructors,
    "tag:yaml.org,2002:int": _StrictConstructor.construct_yaml_int,
    "tag:yaml.org,2002:timestamp": _StrictConstructor.construct_yaml_timestamp,
}


class BoundedSafeLoader(_BudgetComposer, _Parser, _StrictConstructor, Resolver):
    """SafeLoader with budgets: libyaml (or PyYAML) parses, Python composes (and counts) and constructs."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        _StrictConstructor.__init__(self)
        Resolver.__init__(self)
        _BudgetComposer.__init__(self)


def safe_load(text: str) -> Any:
    """Plain data from one YAML document, within the budgets; raises yaml.YAMLError (YamlBudgetError on a budget)."""
    loader = BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
