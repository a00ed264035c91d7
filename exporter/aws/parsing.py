"""One botocore response parser wrapped in a client's endpoint, the others left as botocore makes them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class WrappingParserFactory:
    """botocore's response-parser factory, with the parser of one protocol wrapped by `wrap`."""

    def __init__(self, inner: Any, protocol: str, wrap: Callable[[Any], Any]) -> None:
        self._inner = inner
        self._protocol = protocol
        self._wrap = wrap

    def create_parser(self, protocol: str) -> Any:
        parser = self._inner.create_parser(protocol)
        return self._wrap(parser) if protocol == self._protocol else parser
