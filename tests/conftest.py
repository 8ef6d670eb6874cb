"""Suite-wide settings: never touch the network or the user's data, and make the test backend available everywhere."""
import atexit
import os
import shutil
import tempfile

# Hub libraries (transformers, huggingface_hub, laion_clap) must never try the network from tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# TAG's data folder (the HTTP job store's and the bot's default SQLite files) is private to each test process and
# deleted with it: a test never reads or migrates the store of a real installation, or of another test run.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="tag-tests-data-")
atexit.register(shutil.rmtree, os.environ["XDG_DATA_HOME"], ignore_errors=True)

# The test models are tiny: torch's thread pool costs more than it gives, and on a 2-core CI machine that also
# runs a broker, servers and subprocesses its threads mostly wait for a core (measured: the Make-An-Audio tests
# take 71 s on one thread, 129 s on two). Subprocesses started by tests inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(items):
    """Mark `cuda` every test skipped without a CUDA device (a skipif whose reason names CUDA), so that
    `pytest -m cuda` on a lent GPU runs exactly those (benchmarks/gpu_suite.sh) without a list kept by hand."""
    import pytest

    for item in items:
        if any("cuda" in str(mark.kwargs.get("reason", "")).lower() for mark in item.iter_markers("skipif")):
            item.add_marker(pytest.mark.cuda)
