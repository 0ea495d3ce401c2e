"""Shared test options and fixtures.

Slow cases (long training, sweeps) run only with --runslow. The trained digits runs are
session-scoped: the float run (what `make flow` trains) and its QAT runs at 8 and 4 bits feed the
accuracy, export and bit-exactness tests alike, so each is trained once per session.
"""

import os
import tempfile

import pytest

from saformer.cli import main

# Decoded image folders are cached (saformer.data.cache_dir): the tests keep theirs out of ~/.cache.
os.environ["SAFORMER_CACHE_DIR"] = tempfile.mkdtemp(prefix="saformer-test-cache-")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """The digits config trained from scratch with its defaults."""
    out = tmp_path_factory.mktemp("digits") / "float"
    assert main(["train", "--dataset", "digits", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="session")
def qat_runs(digits_run, tmp_path_factory):
    """QAT fine-tuning of the digits run at 8 and 4 weight bits, exported: {bits: (qrun, export)}."""
    runs = {}
    for bits in (8, 4):
        base = tmp_path_factory.mktemp(f"qat{bits}")
        qrun, export = base / "qrun", base / "export"
        assert main(["quantize", str(digits_run), "--out", str(qrun), "--weight-bits", str(bits), "--no-progress"]) == 0
        assert main(["export", str(qrun), "--out", str(export), "--check-images", "360"]) == 0
        runs[bits] = (qrun, export)
    return runs
