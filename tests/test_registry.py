"""The one Registry type: a package's modules found before the first lookup, and parts from
another package (an ``r1lab.plugins`` entry point) seen by start-up validation like r1lab's own."""
from __future__ import annotations

import importlib.metadata
import sys

import pytest
from omegaconf import OmegaConf

import r1lab.registry as registry
from r1lab.config.schema import RunConfig, ToolsConfig
from r1lab.registry import Registry
from r1lab.rewards import REWARDS, get_reward
from r1lab.stages.registry import STAGE_KINDS, stage_schemas, typed_stage
from r1lab.tools import TOOLS, ToolLimits, ToolResult, dispatch
from r1lab.validate import ConfigError, check_tools, validate


def write_package(root, name: str, modules: dict[str, str]) -> None:
    (root / name).mkdir()
    for module, source in modules.items():
        (root / name / f"{module}.py").write_text(source)


@pytest.fixture
def scratch_modules():
    """Modules a test imports from a temporary folder are forgotten after it."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("my_parts", "my_plugin")):
            del sys.modules[name]


def test_a_registry_with_a_package_imports_its_public_modules_before_the_first_lookup(tmp_path, monkeypatch, scratch_modules):
    write_package(tmp_path, "my_parts", {
        "__init__": "from r1lab.registry import Registry\nPARTS = Registry('part', package='my_parts')\n",
        "alpha": "from my_parts import PARTS\nPARTS.register('alpha', 1)\n",
        "beta": "from my_parts import PARTS\nPARTS.register('beta', 2, heavy=True)\n",
        "_helper": "raise AssertionError('a _module is a helper: never imported by the registry')\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    from my_parts import PARTS

    assert "my_parts.alpha" not in sys.modules  # nothing imported yet
    assert PARTS.names() == ["alpha", "beta"] and PARTS["beta"] == 2 and PARTS.meta("beta") == {"heavy": True}
    assert "my_parts._helper" not in sys.modules


def test_a_module_that_fails_to_import_fails_every_lookup(tmp_path, monkeypatch, scratch_modules):
    write_package(tmp_path, "my_parts", {"__init__": "", "broken": "raise RuntimeError('kaput')\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    parts: Registry = Registry("part", package="my_parts")
    for _ in range(2):  # not an empty registry the second time
        with pytest.raises(RuntimeError, match="kaput"):
            parts.names()


# --- parts from another package: one file, one entry point -------------------------------------

PLUGIN = '''
"""A reward, a tool and a stage kind, each registered where it is defined."""
from dataclasses import dataclass

import torch

from r1lab.config.schema import StageConfig
from r1lab.rewards import register_reward
from r1lab.stages.registry import register_stage
from r1lab.tools import ToolResult, register_tool


@register_reward("shouting")
def shouting(completions, **columns):
    return torch.tensor([float(c.isupper()) for c in completions])


@register_tool("upper")
def upper(text, limits):
    return ToolResult(text.upper(), "ok")


@dataclass
class ShoutStageConfig(StageConfig):
    kind: str = "shout"
    volume: int = 1


def run_shout(ctx):
    raise NotImplementedError


register_stage(ShoutStageConfig, run_shout)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch, scratch_modules):
    """``my_plugin.parts`` declared as an ``r1lab.plugins`` entry point, as a package's
    pyproject.toml would, and loaded; its parts are unregistered after the test."""
    write_package(tmp_path, "my_plugin", {"__init__": "", "parts": PLUGIN})
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = importlib.metadata.EntryPoint(name="parts", value="my_plugin.parts", group=registry.PLUGIN_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [entry] if group == registry.PLUGIN_GROUP else [])
    monkeypatch.setattr(registry, "_plugins_loaded", registry._plugins_loaded)  # restored after the test
    assert registry.reload_plugins() == ["parts"]
    yield
    REWARDS.unregister("shouting")
    TOOLS.unregister("upper")
    STAGE_KINDS.unregister("shout")


def test_a_plugins_parts_are_valid_names_in_a_config(plugin):
    assert get_reward("shouting")(["HI", "hi"]).tolist() == [1.0, 0.0]
    assert dispatch("abc", ["upper"], ToolLimits()) == ("upper", ToolResult("ABC", "ok"))
    assert stage_schemas()["shout"].__module__ == "my_plugin.parts"
    raw = OmegaConf.merge(OmegaConf.structured(RunConfig), {
        "name": "t", "model": {"name_or_path": "tiny"},
        "stages": {"loud": {"kind": "shout", "volume": 3},
                   "grpo": {"kind": "grpo", "rewards": {"shouting": 1.0}, "tools": {"names": ["upper"]}}},
    })
    _, stages = validate(raw)
    assert [(s.name, s.cfg.kind) for s in stages] == [("loud", "shout"), ("grpo", "grpo")] and stages[0].cfg.volume == 3
    with pytest.raises(ConfigError, match=r"stages\.loud \(shout\): .*volum.*valid keys: kind, .*volume"):
        typed_stage("loud", {"kind": "shout", "volum": 3})  # a typo in a plugin stage's field, named


def test_without_the_plugin_its_names_are_unknown():
    with pytest.raises(ConfigError, match="stages.s.kind='shout' is not a stage kind; valid kinds: dpo, grpo, rejection, sft"):
        typed_stage("s", {"kind": "shout"})
    with pytest.raises(ConfigError, match=r"eval\.tools\.names: 'upper' is not a tool; valid: calculator, countdown, python"):
        check_tools(ToolsConfig(names=["upper"]), "eval.tools")
    with pytest.raises(KeyError, match="unknown reward 'shouting'"):
        get_reward("shouting")
