"""Dependencies point down (issue 18): every ``r1lab`` import goes to a lower layer.

An AST walk over ``r1lab/**/*.py`` checks every import: at module level, inside functions (lazy
imports count: they run too), ``import r1lab.x`` and ``from r1lab.x import y`` alike, relative
ones resolved. Imports under ``if TYPE_CHECKING:`` are allowed (they never run).

Layer table (lowest first). A *unit* is a package, or a module given its own row; the longest
row that matches a module wins (``r1lab`` matches only the root ``__init__``):

=====  ============================================  =============================================
layer  units                                         why here
=====  ============================================  =============================================
0      ``r1lab`` (the root ``__init__``),             Pure maths on tensors and text; they import
       ``r1lab.registry``, ``r1lab.algorithms``,      nothing else of r1lab. They sit *below*
       ``r1lab.rewards``                              config because the schemas embed the
                                                     algorithms' own ``*Config`` dataclasses (a
                                                     component owns its config; the stage
                                                     schemas collect them), so they must not
                                                     import config back.
                                                     ``registry`` (the one ``Registry`` type and
                                                     plugin discovery) imports nothing of r1lab;
                                                     its peers may import it (every kind of part
                                                     registers in one).
1      ``r1lab.config`` (schema, store, errors),      The typed schema, Hydra registration, and
       ``r1lab.tools``                                the user-facing errors (``config.errors``,
                                                     ``ConfigError`` too) that every console
                                                     script reports through. tools (called
                                                     mid-rollout) import rewards (the calculator
                                                     is the Countdown evaluator), so they sit
                                                     above layer 0; config declares its own
                                                     ``ToolsConfig``, so neither imports the other.
2      ``r1lab.data``, ``r1lab.models``,              Components built from the config. engine
       ``r1lab.engine``, ``r1lab.tracking``           (DeepSpeed, torch.distributed, checkpoints)
                                                     is a peer of models, not below config: it
                                                     reads ``EngineConfig`` and its export merges
                                                     LoRA adapters; tracking logs on rank 0 only.
                                                     data is generic file loading: what a task's
                                                     rows mean lives with the task.
3      ``r1lab.tasks``                                One module per task: its data, question
                                                     text, reward choice and answer analysis,
                                                     built from ``TaskConfig`` with
                                                     ``data.files``. The verifiers stay in
                                                     rewards (layer 0): tools and claims use them
                                                     and config checks reward names there.
                                                     Stages, eval and validate look tasks up.
4      ``r1lab.rollout``                              Sampling engines (HF, vLLM) and groups.
5      ``r1lab.stages``, ``r1lab.eval``               Training stages (each registers its kind and
                                                     its schema, ``stages.registry``); evaluation,
                                                     beside them.
6      ``r1lab.validate``                             Start-up validation checks every name a
                                                     config gives against the registry that holds
                                                     it (stage kinds, rewards, algorithms, tools,
                                                     tasks, templates, rollout engines), so it
                                                     sits above all of them; nothing but the
                                                     pipeline's callers imports it.
       ``r1lab.stage_cache``                          The pipeline's stage cache (keys, entries,
                                                     locks); imports config and engine only.
7      ``r1lab.pipeline``                             Runs the stages and the evaluations.
8      ``r1lab.cli``                                  The ``r1lab`` console script.
=====  ============================================  =============================================

Rules, each named in a failure:

* **upward**: a unit may import only lower layers (and itself).
* **peer**: two units of one layer may not import each other, except the directed edges in
  ``ALLOWED_PEER_IMPORTS`` (module patterns), which exist today, run one way only and so cannot
  form a cycle. stages and eval are peers: eval never imports stages, and the one stages -> eval
  import is the in-training evaluation (``StageContext.evaluate_during_training``, lazy), which
  runs the evaluator itself; what both use (the behaviour classifiers, ``rewards.behaviours``)
  sits below them.
* **private**: a module whose name starts with ``_`` (``r1lab.rewards._spans``), or a ``_name``
  from any module, may only be imported from inside its own package (``r1lab.<package>``).
* **unmapped**: every module belongs to a row of the table (a new package needs one).

``KNOWN_VIOLATIONS`` lists the violations being fixed elsewhere; an entry that no longer matches
anything fails ``test_known_violations_are_still_there``, so it is deleted once the fix lands.
"""
from __future__ import annotations

import ast
import fnmatch
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "r1lab"

LAYERS: dict[str, int] = {
    "r1lab": 0,  # the root package's __init__ only: it imports nothing (every import runs it)
    "r1lab.registry": 0,  # the Registry type and plugin discovery: imports nothing of r1lab
    "r1lab.algorithms": 0,
    "r1lab.rewards": 0,
    "r1lab.config": 1,
    "r1lab.tools": 1,  # imports rewards (the calculator reuses the Countdown evaluator), never config
    "r1lab.data": 2,
    "r1lab.models": 2,
    "r1lab.engine": 2,
    "r1lab.tracking": 2,
    "r1lab.tasks": 3,  # one module per task; imports data.files, config (TaskConfig) and the rewards' verifiers
    "r1lab.rollout": 4,
    "r1lab.stages": 5,
    "r1lab.eval": 5,
    "r1lab.validate": 6,
    "r1lab.stage_cache": 6,  # the pipeline's stage cache: keys, entries, locks; imports config and engine only
    "r1lab.pipeline": 7,
    "r1lab.cli": 8,
}

# Same-layer imports between different units: (importer module, imported module) fnmatch
# patterns -> why. Directed: the reverse edge is a violation.
ALLOWED_PEER_IMPORTS: dict[tuple[str, str], str] = {
    ("r1lab.*", "r1lab.registry"):
        "every kind of part (algorithms, rewards, ...) registers in the one Registry type; registry imports nothing of r1lab",
    ("r1lab.engine.engine", "r1lab.models.lora"):
        "Engine.save_pretrained merges LoRA adapters before export (lazy); models never imports engine",
    ("r1lab.tracking.*", "r1lab.engine.dist"):
        "the tracker logs on rank 0 only; engine never imports tracking",
    ("r1lab.stages.context", "r1lab.eval.evaluate"):
        "in-training evaluation (eval.every) runs the evaluator (lazy); eval never imports stages",
}

# Violations being fixed in other changes of issue 18: (importer file, imported module pattern)
# -> why it is tolerated for now. Delete an entry once its fix lands (a stale one fails a test).
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
    # (config/schema.py -> stages.filters, the other one listed in issue 18, is fixed:
    # ReadabilityConfig is declared in config.schema now. eval/answers.py -> the rewards' private
    # math helpers is fixed too: the analyses use the public rewards.math and rewards.spans.)
}


@dataclass(frozen=True)
class Violation:
    path: str  # relative to the repository root
    line: int
    imported: str  # the module imported (from), e.g. "r1lab.cli"
    names: tuple[str, ...]  # the names imported from it, if any
    rule: str

    def __str__(self) -> str:
        names = f" ({', '.join(self.names)})" if self.names else ""
        return f"{self.path}:{self.line}: imports {self.imported}{names}: {self.rule}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> set[str]:
    return {module_name(p) for p in SOURCE.rglob("*.py")}


def unit_of(module: str) -> str | None:
    """The longest row of ``LAYERS`` that ``module`` is or is inside ("r1lab" matches only itself)."""
    best = None
    for unit in LAYERS:
        if module == unit or (unit != "r1lab" and module.startswith(unit + ".")):
            if best is None or len(unit) > len(best):
                best = unit
    return best


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(tree: ast.AST, module: str, is_package: bool, modules: set[str]):
    """``(line, imported module, imported name or None)`` for each r1lab import, lazy ones
    included; ``if TYPE_CHECKING:`` bodies skipped."""
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "r1lab" or alias.name.startswith("r1lab."):
                    yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source == "r1lab" or source.startswith("r1lab."):
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in modules:  # `from r1lab.engine import dist` imports the module
                        yield node.lineno, sub, None
                    else:
                        yield node.lineno, source, alias.name
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(tree)


def _private(module: str, name: str | None) -> bool:
    parts = module.split(".")[1:] + ([name] if name else [])
    return any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in parts)


def _top_package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def check_source(rel_path: str, source: str, modules: set[str] | None = None) -> list[Violation]:
    """The violations of one file (``rel_path`` like ``r1lab/eval/cli.py``), one per import
    line, imported module and rule."""
    modules = all_modules() if modules is None else modules
    path = REPO / rel_path
    importer = module_name(path)
    importer_unit = unit_of(importer)
    if importer_unit is None:
        return [Violation(rel_path, 1, importer, (), "unmapped: add its package to LAYERS in tests/test_import_direction.py")]
    layer = LAYERS[importer_unit]
    found: dict[tuple[int, str, str], list[str]] = {}  # (line, module, rule) -> names
    tree = ast.parse(source, filename=rel_path)
    for line, target, name in imports_of(tree, importer, path.name == "__init__.py", modules):
        rules = []
        target_unit = unit_of(target)
        if target_unit is None:
            rules.append("unmapped: the imported module is in no row of LAYERS")
        elif target_unit != importer_unit:
            target_layer = LAYERS[target_unit]
            if target_layer > layer:
                rules.append(f"upward: {importer_unit} (layer {layer}) imports {target_unit} (layer {target_layer}); "
                             f"imports go to lower layers only")
            elif target_layer == layer and not any(
                fnmatch.fnmatchcase(importer, a) and fnmatch.fnmatchcase(target, b) for a, b in ALLOWED_PEER_IMPORTS
            ):
                rules.append(f"peer: {importer_unit} and {target_unit} are both layer {layer} and {importer} -> "
                             f"{target} is not in ALLOWED_PEER_IMPORTS; move what both need to a lower layer")
        if _private(target, name) and _top_package(target) != _top_package(importer):
            what = f"{target}.{name}" if name and not _private(target, None) else target
            rules.append(f"private: {what} is private to {_top_package(target)}; import a public name instead")
        for rule in rules:
            names = found.setdefault((line, target, rule), [])
            if name:
                names.append(name)
    return [Violation(rel_path, line, target, tuple(names), rule) for (line, target, rule), names in found.items()]


def _known(v: Violation) -> tuple[str, str] | None:
    for key in KNOWN_VIOLATIONS:
        path, pattern = key
        if v.path == path and fnmatch.fnmatchcase(v.imported, pattern):
            return key
    return None


def all_violations() -> list[Violation]:
    modules = all_modules()
    out = []
    for path in sorted(SOURCE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        out += check_source(rel, path.read_text(encoding="utf-8"), modules)
    return out


def test_imports_point_down():
    bad = [str(v) for v in all_violations() if _known(v) is None]
    assert not bad, "imports against the layer table (see tests/test_import_direction.py):\n" + "\n".join(bad)


def test_known_violations_are_still_there():
    used = {_known(v) for v in all_violations()}
    stale = [f"{path} -> {pattern}" for path, pattern in KNOWN_VIOLATIONS if (path, pattern) not in used]
    assert not stale, "fixed: delete these KNOWN_VIOLATIONS entries in tests/test_import_direction.py: " + ", ".join(stale)


def test_every_module_has_a_layer():
    assert "r1lab.pipeline" in all_modules()  # the walk finds the sources
    unmapped = sorted(m for m in all_modules() if unit_of(m) is None)
    assert not unmapped, f"modules in no row of LAYERS: {unmapped}"


# --- the checker itself --------------------------------------------------------------------

MODULES = {"r1lab", "r1lab.rewards", "r1lab.rewards.math", "r1lab.rewards._spans", "r1lab.stages",
           "r1lab.stages.grpo", "r1lab.eval", "r1lab.eval.cli", "r1lab.eval.evaluate", "r1lab.cli",
           "r1lab.engine", "r1lab.engine.dist", "r1lab.engine.engine", "r1lab.models", "r1lab.models.lora",
           "r1lab.config", "r1lab.config.schema", "r1lab.validate", "r1lab.stages.context"}


def _rules(rel_path: str, source: str) -> list[tuple[int, str, tuple[str, ...], str]]:
    return [(v.line, v.imported, v.names, v.rule.split(":")[0]) for v in check_source(rel_path, source, MODULES)]


def test_checker_flags_upward_imports_at_module_level_and_lazy():
    src = "from r1lab.stages.grpo import run_grpo, GRPO\n\ndef f():\n    import r1lab.cli\n"
    assert _rules("r1lab/rewards/math.py", src) == [
        (1, "r1lab.stages.grpo", ("run_grpo", "GRPO"), "upward"), (4, "r1lab.cli", (), "upward")]
    msg = str(check_source("r1lab/rewards/math.py", src, MODULES)[0])
    assert msg.startswith("r1lab/rewards/math.py:1: imports r1lab.stages.grpo (run_grpo, GRPO): upward: r1lab.rewards (layer 0)")


def test_checker_resolves_submodules_and_relative_imports():
    assert _rules("r1lab/config/schema.py", "from r1lab import validate\n") == [
        (1, "r1lab.validate", (), "upward")]
    assert _rules("r1lab/eval/cli.py", "from .. import cli\nfrom . import evaluate\n") == [(1, "r1lab.cli", (), "upward")]
    assert _rules("r1lab/eval/cli.py", "from ..rewards import math\nfrom ..config.errors import ConfigError\n") == []


def test_checker_peer_rule_is_directed():
    assert _rules("r1lab/stages/context.py", "def f():\n    from r1lab.eval.evaluate import evaluate\n") == []
    assert _rules("r1lab/stages/grpo.py", "from r1lab.eval.evaluate import evaluate\n") == [
        (1, "r1lab.eval.evaluate", ("evaluate",), "peer")]
    assert _rules("r1lab/eval/evaluate.py", "from r1lab.stages.context import StageContext\n") == [
        (1, "r1lab.stages.context", ("StageContext",), "peer")]
    assert _rules("r1lab/engine/engine.py", "from r1lab.models.lora import is_lora\n") == []
    assert _rules("r1lab/models/lora.py", "from r1lab.engine import dist\n") == [(1, "r1lab.engine.dist", (), "peer")]


def test_checker_private_rule():
    assert _rules("r1lab/eval/answers.py", "from r1lab.rewards._spans import answer_spans\n") == [
        (1, "r1lab.rewards._spans", ("answer_spans",), "private")]
    assert _rules("r1lab/eval/answers.py", "from r1lab.rewards.math import _helper, fine\n") == [
        (1, "r1lab.rewards.math", ("_helper",), "private")]
    assert _rules("r1lab/rewards/math.py", "from r1lab.rewards._spans import answer_spans\n") == []


def test_checker_allows_type_checking_imports_only():
    src = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from r1lab.cli import fail\n"
           "else:\n    from r1lab.stages.grpo import x\n")
    assert _rules("r1lab/config/schema.py", src) == [(5, "r1lab.stages.grpo", ("x",), "upward")]


def test_checker_flags_unmapped_packages():
    assert _rules("r1lab/newpkg/thing.py", "") == [(1, "r1lab.newpkg.thing", (), "unmapped")]
