import pluggy
import pytest

from tagcore import Backend, hookimpl, hookspecs, plugins
from tagcore.errors import PluginError, UnknownBackend


def test_builtin_plugins_come_from_the_entry_point_group():
    names = dict(plugins.loaded_plugins())
    assert "inprocess" in names
    assert "inprocess" in plugins.transports()
    assert plugins.transports().get("local").name == "inprocess"


def fresh_manager():
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def test_environment_selects_which_plugins_load():
    only = fresh_manager()
    plugins.load_plugins(only, {"TAG_PLUGINS": "inprocess"})
    assert [n for n, _ in only.list_name_plugin()] == ["inprocess"]
    none = fresh_manager()
    plugins.load_plugins(none, {"TAG_PLUGINS": ""})
    assert none.list_name_plugin() == []
    extra = fresh_manager()
    plugins.load_plugins(extra, {"TAG_PLUGINS": "", "TAG_PLUGIN_MODULES": "tag_testkit.tone"})
    assert [n for n, _ in extra.list_name_plugin()] == ["tag_testkit.tone"]
    with pytest.raises(PluginError, match="cannot be imported"):
        plugins.load_plugins(fresh_manager(), {"TAG_PLUGINS": "", "TAG_PLUGIN_MODULES": "no_such_module_xyz"})


class Hum(Backend):
    name = "hum"
    aliases = ("drone",)
    sample_rate = 8000
    native_max_duration = 5.0
    max_duration = 5.0

    def load(self):
        pass

    def generate_batch(self, items, duration, *, options, progress=None):
        raise NotImplementedError


class HumPlugin:
    @hookimpl
    def register_backends(self, register):
        register(Hum)


def test_extra_plugin_registered_at_run_time_is_found_by_name_and_alias():
    plugins.register_plugin(HumPlugin(), name="hum-plugin")
    try:
        assert plugins.backends().get("drone") is Hum
        assert "hum" in plugins.backends().names()
    finally:
        plugins.unregister_plugin("hum-plugin")
    with pytest.raises(UnknownBackend, match="unknown backend 'hum'"):
        plugins.backends().get("hum")


def test_two_plugins_with_one_name_are_an_error():
    class Twin(Hum):
        pass

    class TwinPlugin:
        @hookimpl
        def register_backends(self, register):
            register(Twin)

    plugins.register_plugin(HumPlugin(), name="hum-a")
    plugins.register_plugin(TwinPlugin(), name="hum-b")
    try:
        with pytest.raises(PluginError, match="two plugins register a backend named 'hum'"):
            plugins.backends()
    finally:
        plugins.unregister_plugin("hum-a")
        plugins.unregister_plugin("hum-b")
