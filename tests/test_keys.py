"""The one table of ``run``'s settings (:mod:`streambench.spec.keys`) and what is derived from it:
argparse, the ``--config`` keys, the generation settings, the workload options and
:class:`~streambench.spec.run.SweepSettings`."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from streambench.cli.run import build_parser
from streambench.errors import UsageError
from streambench.spec.keys import TABLE, YAML_KEYS, keys_of


def _sub(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_every_option_of_run_is_one_entry_of_the_table():
    run = _sub("run")
    options = {s for a in run._actions for s in a.option_strings} - {"-h", "--help", "--debug"}
    options -= {"--no-telemetry"}  # BooleanOptionalAction's second spelling
    flags = {f for k in keys_of("run") for f in k.flags if f.startswith("-")}
    assert options == flags
    dests = [k.dest for k in TABLE]
    assert len(dests) == len(set(dests)), "one entry per setting"


def test_endpoint_has_the_workload_options_of_the_table():
    endpoint = _sub("endpoint")
    options = {s for a in endpoint._actions for s in a.option_strings}
    for k in keys_of("endpoint"):
        assert set(k.flags) <= options, k.dest
    assert "--apply-chat-template" not in options  # run only


def test_generation_settings_and_workload_options_derive_from_the_table():
    from streambench.spec.generation import SETTINGS
    from streambench.workloads.options import DESTS, PARSERS

    assert list(SETTINGS) == [k.dest for k in TABLE if k.gen is not None]
    assert all(k.axis and k.identity for k in TABLE if k.gen is not None)
    assert SETTINGS["engine"].default == "transformers" and SETTINGS["compile"].load
    assert SETTINGS["test_api"].option == "config key 'test_api'"
    assert list(DESTS) == [k.dest for k in TABLE if k.group == "workload"] == list(PARSERS)


def test_fields_and_written_settings_exist_on_the_sweep_settings():
    from streambench.spec.run import SweepSettings

    names = {f.name for f in dataclasses.fields(SweepSettings)}
    assert {k.field for k in TABLE if k.field} <= names
    places = sorted(k.written for k in TABLE if k.written)
    assert places == list(range(1, len(places) + 1)), "written: 1, 2, ... in order"
    assert all(k.field for k in TABLE if k.written)


def test_yaml_keys_keep_the_all_in_one_names():
    for key, dest in (("repo_id", "models"), ("warm_up", "warmup"), ("num_trials", "trials"),
                      ("in_out_pairs", "in_out"), ("test_api", "test_api")):  # fmt: skip
        assert YAML_KEYS[key].dest == dest
    assert "config" not in YAML_KEYS and "resume" not in YAML_KEYS and "verbose" not in YAML_KEYS


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("seed", "abc", "config c.yaml: key 'seed': 'abc' is not a whole number"),
        ("ipex", "false", "config c.yaml: key 'ipex': 'false' is not a boolean"),
        ("max_prompts", 0, "config c.yaml: key 'max_prompts': '0' is not a whole number from 1"),
        ("temperature", "0", "config c.yaml: key 'temperature': '0' is out of range"),
    ],
)
def test_errors_name_the_config_key(key, value, message):
    with pytest.raises(UsageError) as err:
        YAML_KEYS[key].coerce(value, f"config c.yaml: key {key!r}")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_sweep_settings_are_frozen_and_rebuilt_from_json():
    from streambench.spec.models import ModelSpec
    from streambench.spec.run import SweepSettings

    settings = SweepSettings([ModelSpec("m", "embedded")], [(4, 4)], [1], isolate="none")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 1  # type: ignore[misc]
    data = dataclasses.asdict(settings)
    data["models"] = settings.models
    again = SweepSettings(**data)
    assert again == settings and again.isolate == "none"
    from streambench.runners.local.plan import SweepSettings as OldHome

    assert OldHome is SweepSettings
