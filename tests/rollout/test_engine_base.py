"""The `RolloutEngine` base class and ``ROLLOUT_ENGINES``: what an engine must implement, what it
gets for free, the capabilities it declares and what callers do with them, and how engine
modules are found (one file each, no hand-written import)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from r1lab.config.schema import RolloutConfig, ToolsConfig
from r1lab.rollout.engine import ROLLOUT_ENGINES, Completion, Policy, RolloutEngine, RolloutEngineError, build_rollout_engine
from r1lab.rollout.groups import GroupRequest, generate_groups
from r1lab.rollout.hf_engine import HFEngine
from r1lab.rollout.remote import RemoteEngine
from r1lab.rollout.sampler import SamplingParams
from r1lab.rollout.vllm_engine import VLLM_INSTALL_HINT, VLLMEngine
from r1lab.stages.grpo import run_grpo

from tests.stages.helpers import MICRO, make_ctx


@pytest.fixture(scope="module")
def micro_model(tmp_path_factory) -> str:
    from r1lab.models.tiny import save_tiny_model

    return str(save_tiny_model(MICRO, tmp_path_factory.mktemp("micro") / "model"))


@pytest.fixture
def registered():
    """Register engine classes for one test: ``registered("name", cls)``; removed afterwards."""
    names = []

    def register(name: str, cls):
        ROLLOUT_ENGINES.register(name)(cls)
        names.append(name)
        return cls

    yield register
    for name in names:
        ROLLOUT_ENGINES.unregister(name)


class Echo(RolloutEngine):
    """The least an engine writes: ``generate``."""

    name = "echo"

    def generate(self, prompt_ids, params, seed, max_batch=0):
        return [Completion(list(p), "", True) for p in prompt_ids]


def test_an_engine_without_generate_cannot_be_instantiated():
    class NoGenerate(RolloutEngine):
        name = "broken"

    with pytest.raises(TypeError, match="abstract method.*generate"):
        NoGenerate()


def test_the_base_gives_no_op_lifecycle_and_declares_no_capability():
    engine = Echo()
    assert [engine.sync_weights(), engine.sleep(), engine.wake(), engine.close()] == [None] * 4
    assert engine.push_figures() == {} and engine.seconds_last_push == 0.0
    assert (engine.pushes_weights, engine.tools_in_decode, engine.runs_tools, engine.returns_logprobs) == (False, False, False, True)
    assert (engine.requires, engine.install_hint) == ((), "")
    with pytest.raises(NotImplementedError, match="echo engine runs no tool calls in its decode loop"):
        engine.generate_with_tools([[1]], SamplingParams(4), None, 0, hook=None)


def test_declaring_tools_in_decode_without_generate_with_tools_is_refused():
    with pytest.raises(TypeError, match="OnePass declares tools_in_decode but does not implement generate_with_tools"):
        class OnePass(Echo):  # noqa: F841
            tools_in_decode = True


def test_what_r1labs_engines_declare():
    """Each flag is what its callers rely on (the behaviour tests below): vLLM and the rollout
    workers hold a copy of the weights (GRPO logs the push), only hf decodes tool calls in place,
    only the workers run tool calls themselves."""
    flags = lambda cls: (cls.pushes_weights, cls.tools_in_decode, cls.runs_tools, cls.returns_logprobs)  # noqa: E731
    assert flags(HFEngine) == (False, True, False, True)
    assert flags(VLLMEngine) == (True, False, False, True)
    assert flags(RemoteEngine) == (True, False, True, True)
    assert ROLLOUT_ENGINES.get("hf") is HFEngine and ROLLOUT_ENGINES.get("vllm") is VLLMEngine
    assert (VLLMEngine.requires, VLLMEngine.install_hint) == (("vllm",), VLLM_INSTALL_HINT)
    assert HFEngine.requires == ()


def test_an_unknown_backend_names_the_registered_ones():
    with pytest.raises(KeyError, match="unknown rollout engine 'sglang'; valid names: .*hf, .*vllm"):
        build_rollout_engine(RolloutConfig(backend="sglang"), Policy(module=None, path=""), None, seed=0)


def test_a_missing_requirement_fails_with_the_engines_install_hint(registered):
    class Needy(Echo):
        requires = ("r1lab_no_such_module",)
        install_hint = "rollout=needy needs r1lab_no_such_module: pip install it, or use rollout=hf"

        def __init__(self, *args) -> None:
            raise AssertionError("built although its requirement is missing")

    registered("needy", Needy)
    with pytest.raises(RolloutEngineError, match=r"rollout=needy needs r1lab_no_such_module: pip install it, or use rollout=hf \(No module"):
        build_rollout_engine(RolloutConfig(backend="needy"), Policy(module=None, path=""), None, seed=0)


def test_an_engine_builds_itself_from_the_run_config(registered):
    class Configured(Echo):
        def __init__(self, cfg, policy, tokenizer, seed) -> None:
            self.args = (cfg, policy, tokenizer, seed)

    registered("configured", Configured)
    cfg, policy = RolloutConfig(backend="configured"), Policy(module=None, path="p")
    engine = build_rollout_engine(cfg, policy, "tok", seed=5)
    assert isinstance(engine, Configured) and engine.args == (cfg, policy, "tok", 5)


def test_an_engine_module_is_found_without_an_import(tmp_path):
    """A ``*_engine.py`` module in ``r1lab/rollout`` registers its engine before the first lookup;
    r1lab's own modules load without vLLM. (A fresh process: the registry is the real one.)"""
    (tmp_path / "toy_engine.py").write_text(textwrap.dedent("""
        from r1lab.rollout.engine import ROLLOUT_ENGINES, RolloutEngine

        @ROLLOUT_ENGINES.register("toy")
        class ToyEngine(RolloutEngine):
            name = "toy"

            def generate(self, prompt_ids, params, seed, max_batch=0):
                return []
    """))
    script = textwrap.dedent(f"""
        import json, sys
        import r1lab.rollout
        r1lab.rollout.__path__.append({str(tmp_path)!r})
        from r1lab.rollout.engine import ROLLOUT_ENGINES
        before = "r1lab.rollout.hf_engine" in sys.modules
        names = ROLLOUT_ENGINES.names()
        print(json.dumps([before, names, "vllm" in sys.modules, ROLLOUT_ENGINES.get("toy").__name__]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    before, names, vllm_imported, toy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not before and {"hf", "vllm", "toy"} <= set(names) and toy == "ToyEngine"
    assert not vllm_imported


def test_an_engine_that_runs_tools_itself_gets_them_and_is_not_wrapped():
    class Workers(Echo):
        runs_tools = True

        def generate(self, prompt_ids, params, seed, max_batch=0, tools=None, contexts=None):
            self.got = (tools, contexts)
            return super().generate(prompt_ids, params, seed, max_batch)

    engine, tools = Workers(), ToolsConfig(names=["calculator"])
    request = GroupRequest(1, [[1, 2]], {}, [{"target": 3}])
    out = generate_groups(engine, None, request, SamplingParams(4), seed=0, tools=tools)
    assert engine.got == (tools, [{"target": 3}]) and out[0].tool_stats is None  # no ToolCallingEngine around it


class PushingHF(HFEngine):
    """The hf engine declaring a copy of the weights, with a known push time."""

    pushes_weights = True

    def generate(self, prompt_ids, params, seed, max_batch=0):
        self.seconds_last_push = 0.125
        return super().generate(prompt_ids, params, seed, max_batch)


@pytest.mark.parametrize("backend, logged", [("hf", None), ("pushing_hf", 0.125)])
def test_grpo_logs_the_weight_push_exactly_for_engines_that_push(tmp_path, micro_model, registered, backend, logged):
    registered("pushing_hf", PushingHF)
    stage = {"kind": "grpo", "steps": 1, "prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 6,
             "micro_batch_per_device": 4, "rewards": {"countdown": 1.0}}
    ctx = make_ctx(tmp_path / "stage", micro_model, {"grpo": stage})
    ctx.run.rollout.backend = backend
    run_grpo(ctx)
    metrics = json.loads((tmp_path / "stage" / "metrics.jsonl").read_text().splitlines()[0])
    assert metrics.get("time_weight_push") == logged
