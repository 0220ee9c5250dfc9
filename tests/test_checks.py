"""System checks for ``DURABLE_OBJECTS`` (SPEC §10): misconfiguration is reported by
``manage.py check``, as check messages, never as a traceback."""

from __future__ import annotations

import pytest
from django.core.checks import ERROR, WARNING, run_checks
from django.core.checks.registry import registry
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_durable.checks import check_durable_settings

BASE = {"IDLE_TIMEOUT": 10}


def durable_messages(config) -> list:
    """What the check says about DURABLE_OBJECTS = ``config``."""
    with override_settings(DURABLE_OBJECTS=config):
        return check_durable_settings()


def test_the_check_is_registered() -> None:
    assert check_durable_settings in registry.get_checks()
    with override_settings(DURABLE_OBJECTS={"MAX_WEBSOCKETS": 0}):
        found = run_checks()
    assert "django_durable.E002" in [m.id for m in found]


def errors(config) -> list:
    return [m for m in durable_messages(config) if m.level >= ERROR]


@pytest.mark.parametrize(
    "config",
    [
        None,
        {},
        BASE,
        {
            "IDLE_TIMEOUT": 0.5,
            "MAX_WEBSOCKETS": 3,
            "ATTACHMENT_MAX_BYTES": 16_384,
            "HIBERNATE_EAGERLY": True,
            "DATABASE": "default",
            "SESSION_LAYER": {"BACKEND": "django_durable.session.InMemorySessionLayer"},
        },
        {"SESSION_LAYER": {"BACKEND": "django_durable.session.InMemorySessionLayer", "CONFIG": {}}},
    ],
    ids=["unset", "empty", "test-settings", "everything", "session-layer-with-config"],
)
def test_valid_settings_pass(config) -> None:
    assert durable_messages(config) == []


@pytest.mark.parametrize("value", [0, -1, "10", None, True, float("nan"), [10]])
@pytest.mark.parametrize("key", ["IDLE_TIMEOUT", "ALARM_RETRY_BASE_DELAY", "ALARM_POLL_INTERVAL"])
def test_durations_must_be_positive_numbers(key, value) -> None:
    found = errors({**BASE, key: value})
    assert len(found) == 1
    assert found[0].id == "django_durable.E002"
    assert key in found[0].msg
    assert repr(value) in found[0].msg


@pytest.mark.parametrize("value", [0, -1, "10", True, float("nan"), [10]])
def test_the_storage_timeout_is_a_positive_number_or_none(value) -> None:
    found = errors({**BASE, "STORAGE_TIMEOUT": value})
    assert len(found) == 1
    assert found[0].id == "django_durable.E002"
    assert "STORAGE_TIMEOUT" in found[0].msg
    assert errors({**BASE, "STORAGE_TIMEOUT": None}) == []
    assert errors({**BASE, "STORAGE_TIMEOUT": 2.5}) == []


@pytest.mark.parametrize("value", [0, -5, 1.5, "3", None, True])
@pytest.mark.parametrize("key", ["MAX_WEBSOCKETS", "ATTACHMENT_MAX_BYTES", "MAX_HELD_BYTES"])
def test_sizes_must_be_positive_ints(key, value) -> None:
    found = errors({**BASE, key: value})
    assert len(found) == 1
    assert found[0].id == "django_durable.E002"
    assert key in found[0].msg
    assert repr(value) in found[0].msg


@pytest.mark.parametrize("value", ["yes", 1, 0, None])
def test_hibernate_eagerly_must_be_a_bool(value) -> None:
    found = errors({**BASE, "HIBERNATE_EAGERLY": value})
    assert [m.id for m in found] == ["django_durable.E003"]
    assert repr(value) in found[0].msg


@pytest.mark.parametrize("value", ["nope", ["default"], None])
def test_database_must_be_a_configured_alias(value) -> None:
    found = errors({**BASE, "DATABASE": value})
    assert [m.id for m in found] == ["django_durable.E004"]
    assert repr(value) in found[0].msg


def test_durable_objects_must_be_a_dict() -> None:
    found = errors([("IDLE_TIMEOUT", 10)])
    assert [m.id for m in found] == ["django_durable.E001"]


def test_unknown_keys_are_warned_about() -> None:
    messages = durable_messages({**BASE, "IDLE_TIMOUT": 5})
    assert [(m.id, m.level) for m in messages] == [("django_durable.W001", WARNING)]
    assert "IDLE_TIMOUT" in messages[0].msg


def test_every_problem_is_reported_at_once() -> None:
    found = errors({"IDLE_TIMEOUT": 0, "MAX_WEBSOCKETS": 0, "HIBERNATE_EAGERLY": "no"})
    assert sorted(m.id for m in found) == [
        "django_durable.E002",
        "django_durable.E002",
        "django_durable.E003",
    ]


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        ("django_durable.session.InMemorySessionLayer", "django_durable.E010"),
        ({"CONFIG": {}}, "django_durable.E010"),
        ({"BACKEND": "no.such.module.Layer"}, "django_durable.E011"),
        ({"BACKEND": "django_durable.session.NoSuchLayer"}, "django_durable.E011"),
        ({"BACKEND": "nodots"}, "django_durable.E011"),
        ({"BACKEND": "django_durable.conf.DEFAULTS"}, "django_durable.E012"),
        ({"BACKEND": "channels.layers.InMemoryChannelLayer"}, "django_durable.E012"),
        (
            {"BACKEND": "django_durable.session.InMemorySessionLayer", "CONFIG": []},
            "django_durable.E013",
        ),
    ],
    ids=[
        "not-a-dict",
        "no-backend",
        "missing-module",
        "missing-class",
        "not-a-dotted-path",
        "not-a-class",
        "not-a-session-layer",
        "config-not-a-dict",
    ],
)
def test_bad_session_layers_are_reported(layer, expected) -> None:
    found = errors({**BASE, "SESSION_LAYER": layer})
    assert [m.id for m in found] == [expected]


@pytest.mark.parametrize("backend", [42, None, ["django_durable.session.InMemorySessionLayer"]])
def test_a_backend_that_is_not_a_string_is_reported_not_raised(backend) -> None:
    found = errors({**BASE, "SESSION_LAYER": {"BACKEND": backend}})
    assert len(found) == 1
    assert found[0].id.startswith("django_durable.E01")


def test_redis_session_layer_config_is_checked() -> None:
    pytest.importorskip("redis")
    layer = {
        "BACKEND": "django_durable.session.RedisSessionLayer",
        "CONFIG": {"hosts": "redis://127.0.0.1:6379"},  # a str, not a list
    }
    found = errors({**BASE, "SESSION_LAYER": layer})
    assert [m.id for m in found] == ["django_durable.E014"]
    assert "hosts" in found[0].msg


def test_manage_py_check_fails_on_a_bad_setting() -> None:
    bad = override_settings(DURABLE_OBJECTS={"MAX_WEBSOCKETS": -1})
    with bad, pytest.raises(SystemCheckError, match="MAX_WEBSOCKETS"):
        call_command("check")
    with override_settings(DURABLE_OBJECTS=BASE):
        call_command("check")  # and passes on a good one


# durable_name (SPEC §2): unique among the project's classes, no "/" ------------------


@pytest.fixture
def scratch_classes():
    """Forget the classes a test defines, so the project's own check stays clean."""
    from django_durable.consumer import defined, registry

    before = {name: dict(paths) for name, paths in defined.items()}
    registered = dict(registry)
    yield
    defined.clear()
    defined.update(before)
    registry.clear()
    registry.update(registered)


def test_the_project_s_durable_names_pass_the_check() -> None:
    from django_durable.checks import check_durable_names

    assert check_durable_names in registry.get_checks()
    assert check_durable_names() == []


def test_two_classes_with_one_durable_name_are_a_check_error(scratch_classes) -> None:
    from django_durable import DurableConsumer
    from django_durable.checks import check_durable_names

    class First(DurableConsumer):
        durable_name = "chat.room"

    class Second(DurableConsumer):
        durable_name = "chat.room"

    found = [m for m in check_durable_names() if m.id == "django_durable.E051"]
    assert len(found) == 1
    assert "'chat.room' is used by 2 classes" in found[0].msg
    assert "First" in found[0].msg and "Second" in found[0].msg
    with pytest.raises(SystemCheckError, match="E051"):
        call_command("check")


def test_a_class_named_like_another_s_default_name_is_a_check_error(scratch_classes) -> None:
    from django_durable import DurableConsumer
    from django_durable.checks import check_durable_names
    from tests.app.consumers import Room

    class Impostor(DurableConsumer):
        durable_name = Room.durable_name

    ids = [m.id for m in check_durable_names()]
    assert ids == ["django_durable.E051"]


def test_a_durable_name_with_a_slash_is_a_check_error(scratch_classes) -> None:
    from django_durable import DurableConsumer
    from django_durable.checks import check_durable_names

    class Slashed(DurableConsumer):
        durable_name = "chat/room"

    found = check_durable_names()
    assert [m.id for m in found] == ["django_durable.E050"]
    assert "'chat/room' contains '/'" in found[0].msg
    assert found[0].level == ERROR


def test_a_class_defined_again_under_the_same_path_is_not_a_duplicate(scratch_classes) -> None:
    from django_durable import DurableConsumer
    from django_durable.checks import check_durable_names

    def make() -> type:
        class Again(DurableConsumer):
            durable_name = "again.once"

        return Again

    make()
    make()
    assert check_durable_names() == []


@pytest.mark.parametrize(
    ("backend", "redis_hint"),
    [
        ("django_durable.session.RedisSessionLayerTypo", True),
        ("django_durable.session.redis_typo.RedisSessionLayer", True),
        ("myproject.layers.Custom", False),
        ("django_durable.session.InMemoryLayerTypo", False),
    ],
)
def test_the_redis_extra_hint_only_for_the_redis_backend(backend, redis_hint) -> None:
    found = errors({**BASE, "SESSION_LAYER": {"BACKEND": backend}})
    assert [m.id for m in found] == ["django_durable.E011"]
    assert ('"django-durable-objects[redis]"' in found[0].hint) is redis_hint
    assert ("redis" in found[0].hint.lower()) is redis_hint


def test_a_value_that_is_not_a_dict_is_named_in_the_message_not_as_a_prefix() -> None:
    (found,) = errors("yes")
    assert found.obj is None  # Django prints obj as a prefix: "yes: (...)"
    assert str(found) == "?: (django_durable.E001) DURABLE_OBJECTS must be a dict; got str 'yes'."
