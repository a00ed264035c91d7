"""Loaded at start-up by Python processes the tests start (PYTHONPATH): install the request-conformance hook."""

import atexit
import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_request_conformance", Path(__file__).resolve().parents[1] / "__init__.py"
)
try:  # a Python without botocore (another tool the tests start) just runs without the hook
    import botocore.handlers  # noqa: F401
except ImportError:
    _spec = None
if _spec is not None and _spec.loader is not None:
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["_request_conformance"] = _module
    _spec.loader.exec_module(_module)
    _module.install()
    atexit.register(_module.write_subprocess_stats)
