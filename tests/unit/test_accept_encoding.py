"""Accept-Encoding negotiation for /metrics: q-values per RFC 9110 section 12.5.3 (issue 26, case 9)."""

from __future__ import annotations

import gzip as gzip_module
import time

import pytest

from exporter.http import Router, accepts_gzip
from exporter.snapshot import Store


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("x-gzip", True),
        ("gzip, deflate, br", True),
        ("gzip;q=1.0, identity;q=0.5, *;q=0", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("deflate, gzip;q=0", False),
        ("*;q=0", False),
        ("*", True),
        ("*;q=0, identity", False),
        ("identity;q=0", False),  # gzip not listed: not acceptable; we then send identity anyway (RFC 9110 12.5.3)
        ("identity;q=0, gzip", True),
        ("gzip;q=0.2, identity;q=0.8", False),  # identity preferred
        ("gzip;q=0.5", True),
        ("gzip;q=2", False),  # not a qvalue: the element is ignored
        ("gzip;q=abc", False),
        ("", False),
        ("deflate", False),
    ],
)
def test_q_values_decide_gzip(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected


class Body:
    def parts(self, gzip: bool = False) -> tuple[bytes, ...]:
        return (gzip_module.compress(b"m 1\n") if gzip else b"m 1\n",)


def test_metrics_honours_gzip_q_zero() -> None:
    router = Router(Store(time.time), Body())
    refused = router.handle("GET", "/metrics", {"Accept-Encoding": "gzip;q=0"}, lambda n: b"")
    assert "Content-Encoding" not in refused.headers and refused.body == b"m 1\n"
    assert refused.headers["Vary"] == "Accept-Encoding"
    wanted = router.handle("GET", "/metrics", {"Accept-Encoding": "gzip"}, lambda n: b"")
    assert wanted.headers["Content-Encoding"] == "gzip" and gzip_module.decompress(wanted.body) == b"m 1\n"
