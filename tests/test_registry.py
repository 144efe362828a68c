import pytest

from apo.registry import Registry


def test_registered_function_is_returned_by_name():
    registry = Registry("widget")

    @registry.register("double")
    def double(x):
        return 2 * x

    assert registry.get("double") is double
    assert registry.get("double")(4) == 8
    assert "double" in registry
    assert list(registry) == ["double"]


def test_unknown_name_error_lists_allowed_names():
    registry = Registry("widget")
    registry.register("b")(lambda: 1)
    registry.register("a")(lambda: 2)
    with pytest.raises(ValueError, match=r"unknown widget 'c'; allowed: a, b"):
        registry.get("c")


def test_registering_a_name_twice_is_an_error():
    registry = Registry("widget")
    registry.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(lambda: 2)


def test_a_former_name_reaches_the_renamed_entry():
    registry = Registry("thing")
    registry.register("new")(lambda: 1)
    registry.alias("old", "new")
    assert registry.get("old")() == 1 and "old" in registry
    assert registry.canonical("old") == "new" and registry.canonical("new") == "new"
    assert registry.names() == ["new"]  # errors list the current names only
    with pytest.raises(ValueError, match="cannot alias"):
        registry.alias("other", "missing")
