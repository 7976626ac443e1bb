"""Shared test setup.

The harbor CNNs are trained once (about 80 s on two cores) and cached under
``$GROUNDBENCH_CACHE``. Tests reuse the cache named by that variable when it is set; otherwise a
session temporary folder, so no test writes into the user's home. Subprocesses started by tests
inherit the variable.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def groundbench_cache(tmp_path_factory: pytest.TempPathFactory):
    before = os.environ.get("GROUNDBENCH_CACHE")
    path = before or str(tmp_path_factory.mktemp("groundbench-cache"))
    os.environ["GROUNDBENCH_CACHE"] = path
    yield path
    if before is None:
        os.environ.pop("GROUNDBENCH_CACHE", None)
