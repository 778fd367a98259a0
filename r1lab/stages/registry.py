"""Stage kinds: one registration each -- its schema, its run function, what it writes.

A stage kind is

* its schema: a ``StageConfig`` subclass that sets ``kind`` (defining it adds it to
  ``r1lab.config.schema.STAGE_SCHEMAS``, which start-up validation reads without importing any
  stage; the kind's own checks are its ``check`` method), and
* one ``register_stage(schema, run, ...)`` call: the function that runs it and what it writes.

The pipeline looks a stage's kind up in ``STAGE_KINDS`` and never branches on its name. A new kind::

    @dataclass
    class DistillStageConfig(StageConfig):
        kind: str = "distill"
        teacher: str = MISSING

    def run_distill(ctx: StageContext) -> None: ...   # writes ctx.checkpoint_dir

    register_stage(DistillStageConfig, run_distill)
"""
from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from r1lab.config.errors import ConfigError
from r1lab.config.schema import STAGE_SCHEMAS, StageConfig

if TYPE_CHECKING:
    from r1lab.stages.context import StageContext


@dataclass(frozen=True)
class StageKind:
    name: str  # the `kind` of its stages
    schema: type  # its StageConfig subclass
    run: Callable[["StageContext"], None]  # runs one stage: writes <stage_dir>/checkpoint/ and/or dataset/
    writes_dataset: bool = False  # writes <stage_dir>/dataset/, what a later stage's `data: previous` reads
    # a rank's share of `batch_size` must split into equal micro-batches of micro_batch_per_device
    # (a loop that slices it in fixed-size micro-batches; ZeRO-3 needs equal passes on every rank)
    equal_micro_batches: bool = False


STAGE_KINDS: dict[str, StageKind] = {}  # kind -> StageKind, in registration order


def register_stage(schema: type, run: Callable[["StageContext"], None], *, writes_dataset: bool = False,
                   equal_micro_batches: bool = False) -> StageKind:
    """Make ``schema``'s kind runnable by the pipeline with ``run``."""
    name = getattr(schema, "kind", None)
    if STAGE_SCHEMAS.get(name) is not schema:
        raise ValueError(
            f"{getattr(schema, '__name__', schema)!r} is not a stage schema: subclass "
            "r1lab.config.schema.StageConfig and set `kind`"
        )
    if name in STAGE_KINDS:
        raise ValueError(f"stage kind {name!r} is registered twice")
    STAGE_KINDS[name] = StageKind(name, schema, run, writes_dataset, equal_micro_batches)
    return STAGE_KINDS[name]


def dataset_kinds() -> tuple[str, ...]:
    """The kinds whose stages write a dataset."""
    return tuple(k.name for k in STAGE_KINDS.values() if k.writes_dataset)


class RunFunctions(MutableMapping):
    """``STAGES``: kind -> run function, a live view of ``STAGE_KINDS``. Setting a kind's item
    swaps its run function (a test's fake stage); the rest of its registration stays."""

    def __getitem__(self, kind: str) -> Callable:
        return STAGE_KINDS[kind].run

    def __setitem__(self, kind: str, run: Callable) -> None:
        if kind in STAGE_KINDS:
            STAGE_KINDS[kind] = replace(STAGE_KINDS[kind], run=run)
        else:
            register_stage(STAGE_SCHEMAS.get(kind), run)

    def __delitem__(self, kind: str) -> None:
        del STAGE_KINDS[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(STAGE_KINDS)

    def __len__(self) -> int:
        return len(STAGE_KINDS)


STAGES = RunFunctions()


@dataclass
class Stage:
    """One stage of a run's pipeline, as start-up validation typed it."""

    index: int  # position in the pipeline, from 1
    name: str  # key under `stages`
    cfg: Any  # the typed stage config (SFTStageConfig, GRPOStageConfig, ...)

    @property
    def dirname(self) -> str:
        return f"{self.index:02d}-{self.name}"


def typed_stage(name: str, raw: Any) -> StageConfig:
    """Merge one stage's YAML onto the schema of its kind; unknown keys and bad types fail."""
    if is_dataclass(raw) and type(raw) in STAGE_SCHEMAS.values():  # already typed (a recipe's stage schema)
        return raw
    if not isinstance(raw, (dict, DictConfig)):
        raise ConfigError(f"stages.{name} must be a mapping with a `kind`, got {raw!r}")
    kind = raw.get("kind")
    if kind not in STAGE_SCHEMAS:
        raise ConfigError(
            f"stages.{name}.kind={kind!r} is not a stage kind; valid kinds: {', '.join(STAGE_SCHEMAS)}"
        )
    schema = OmegaConf.structured(STAGE_SCHEMAS[kind])
    try:
        merged = OmegaConf.merge(schema, raw)
    except OmegaConfBaseException as err:
        first_line = str(err).splitlines()[0]
        valid = ", ".join(f.name for f in fields(STAGE_SCHEMAS[kind]))
        raise ConfigError(f"stages.{name} ({kind}): {first_line}; valid keys: {valid}") from None
    return OmegaConf.to_object(merged)


def import_stage_modules() -> None:
    """Import every module of ``r1lab.stages``: each registers its own kind at its bottom, so a
    new module's kind is known without a hand-kept list. The pipeline calls this once."""
    import importlib
    import pkgutil

    import r1lab.stages as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
