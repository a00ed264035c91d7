"""exporter.runtime: the allocator settings, each in a fresh interpreter (they are made once per process)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

PROBE = "import json; from exporter.runtime import tune_malloc; print(json.dumps([tune_malloc(), tune_malloc()]))"


def _run(env: dict[str, str]) -> list[dict[str, bool]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return list(json.loads(done.stdout))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_both_settings_are_made_once_on_glibc() -> None:
    first, second = _run({})
    assert first == second  # the second call reports the first outcome, it does not set anything again
    if "MALLOC_ARENA_MAX" not in os.environ and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        assert first == {"arena_max": True, "mmap_threshold": True}


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_operators_environment_wins() -> None:
    first, _ = _run({"MALLOC_ARENA_MAX": "4", "MALLOC_MMAP_THRESHOLD_": "65536"})
    assert first == {"arena_max": False, "mmap_threshold": False}
