"""Plugin registry: discovery, clashes naming both packages, typo suggestions, pending hooks."""

import types

import pytest

from adbench import hookimpl
from adbench.errors import AdbenchError
from adbench.registry import Registry, get_registry


def _plugin(name: str, method_name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    cls = type("M", (), {"name": method_name, "description": "x"})

    @hookimpl
    def adbench_methods():
        return [cls]

    mod.adbench_methods = adbench_methods
    return mod


def test_hand_registered_plugin_is_found():
    reg = Registry(autoload=False, plugins=[_plugin("pkg_a", "alpha")])
    assert reg.names("method") == ["alpha"]
    assert reg.method("alpha").name == "alpha"
    assert reg.entries("method")[0].provider == "pkg_a"


def test_two_plugins_one_name_is_an_error_naming_both():
    reg = Registry(autoload=False, plugins=[_plugin("pkg_a", "alpha"), _plugin("pkg_b", "alpha")])
    with pytest.raises(AdbenchError) as err:
        reg.names("method")
    assert "pkg_a" in str(err.value) and "pkg_b" in str(err.value)


def test_typo_suggests_nearest_name():
    reg = Registry(autoload=False, plugins=[_plugin("pkg_a", "patchead")])
    with pytest.raises(AdbenchError, match="did you mean 'patchead'"):
        reg.method("patchaed")


def test_unknown_hook_implementation_is_an_error():
    mod = types.ModuleType("bad")

    @hookimpl
    def adbench_metods():  # misspelt hook name
        return []

    mod.adbench_metods = adbench_metods
    reg = Registry(autoload=False, plugins=[mod])
    with pytest.raises(Exception, match="adbench_metods"):
        reg.names("method")


def test_builtins_register_through_entry_points():
    reg = Registry(autoload=True)
    assert "patchead" in reg.names("method")
    assert "synthetic" in reg.names("dataset")
    provider = reg.index["method"]["patchead"].provider
    assert provider.startswith("adbench-zsad")


def test_every_hook_is_documented():
    from adbench import hookspecs

    for name in dir(hookspecs):
        if name.startswith("adbench_"):
            assert getattr(hookspecs, name).__doc__, f"hook {name} has no documentation"


def test_every_hook_has_a_builtin_implementation():
    """Each hookspec is exercised by the built-in plugins (and so by their tests)."""
    from adbench import hookspecs
    from adbench.registry import KINDS, LIFECYCLE

    assert {*KINDS.values(), *LIFECYCLE} == {n for n in dir(hookspecs) if n.startswith("adbench_")}
    reg = Registry(autoload=True)
    for kind in KINDS:
        assert reg.names(kind), f"no built-in plugin implements the {kind} hook"
    for hook in LIFECYCLE:
        assert getattr(reg.pm.hook, hook).get_hookimpls(), f"no built-in plugin implements {hook}"


def test_published_names_of_methods_exist_in_the_published_table():
    """A method's published name is its own knowledge; it must match a method of the shipped CSV."""
    from adbench.reports.published import load_published

    known = set(load_published()["method"])
    for entry in get_registry().entries("method"):
        cls = entry.obj
        name = cls.published_name(cls.config_cls())
        assert name is None or name in known, (cls.name, name)


def test_datasets_declare_group_and_order():
    groups = {e.name: e.obj.group for e in get_registry().entries("dataset")}
    assert groups["mvtec"] == groups["visa"] == "industrial" and groups["isic"] == "medical"
    assert get_registry().dataset("mvtec").order < get_registry().dataset("visa").order
