import pytest

import tag_testkit.tone
from tagcore import plugins


@pytest.fixture(scope="session", autouse=True)
def tone_plugin():
    """The deterministic test backend, registered through the same hook as installed plugins."""
    plugins.register_plugin(tag_testkit.tone, name="tag_testkit.tone")
    yield tag_testkit.tone
