"""Stage kinds: one registration each -- its schema, its run function, what it writes.

A stage kind is one module of ``r1lab.stages`` (or of a plugin, see ``r1lab.registry``) holding

* its schema: a ``StageConfig`` subclass that sets ``kind`` (its fields, and its own checks in a
  ``check`` method), and its loop, and
* one ``register_stage(schema, run, ...)`` call at its bottom: the function that runs it and what
  it writes.

``STAGE_KINDS`` (a :class:`r1lab.registry.Registry`) imports every module of ``r1lab.stages``
before its first lookup, so a new module's kind is known to start-up validation (which types each
stage against its kind's schema: :func:`typed_stage`), to Hydra (the ``stage_schema`` group that
recipes' defaults name: :func:`stage_schemas`) and to the pipeline, which looks a stage's kind up
here and never branches on its name. A new kind::

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

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from r1lab.config.errors import ConfigError
from r1lab.config.schema import StageConfig
from r1lab.registry import Registry

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


# kind -> StageKind; the modules of r1lab.stages (each registers its kind) load before the first lookup
STAGE_KINDS: Registry[StageKind] = Registry("stage kind", package="r1lab.stages")


def register_stage(schema: type, run: Callable[["StageContext"], None], *, writes_dataset: bool = False,
                   equal_micro_batches: bool = False) -> StageKind:
    """Make ``schema``'s kind valid in configs and runnable by the pipeline with ``run``."""
    name = getattr(schema, "kind", MISSING)
    if not (isinstance(schema, type) and issubclass(schema, StageConfig) and is_dataclass(schema)) or name == MISSING:
        raise ValueError(
            f"{getattr(schema, '__name__', schema)!r} is not a stage schema: a dataclass that subclasses "
            "r1lab.config.schema.StageConfig and sets `kind`"
        )
    return STAGE_KINDS.register(name, StageKind(name, schema, run, writes_dataset, equal_micro_batches))


def stage_schemas() -> dict[str, type]:
    """Kind -> schema of every registered stage kind, in registration order."""
    return {name: kind.schema for name, kind in STAGE_KINDS.items()}


def dataset_kinds() -> tuple[str, ...]:
    """The kinds whose stages write a dataset."""
    return tuple(name for name, kind in STAGE_KINDS.items() if kind.writes_dataset)


class RunFunctions(MutableMapping):
    """``STAGES``: kind -> run function, a live view of ``STAGE_KINDS``. Setting a kind's item
    swaps its run function (a test's fake stage); the rest of its registration stays."""

    def __getitem__(self, kind: str) -> Callable:
        return STAGE_KINDS[kind].run

    def __setitem__(self, kind: str, run: Callable) -> None:
        STAGE_KINDS.replace(kind, replace(STAGE_KINDS[kind], run=run))  # an unknown kind: register_stage it first

    def __delitem__(self, kind: str) -> None:
        STAGE_KINDS.unregister(kind)

    def __iter__(self) -> Iterator[str]:
        return iter(STAGE_KINDS)

    def __len__(self) -> int:
        return len(STAGE_KINDS)


STAGES = RunFunctions()


def import_stage_modules() -> None:
    """Import every module of ``r1lab.stages`` (each registers its own kind at its bottom); any
    lookup of ``STAGE_KINDS`` does it first, this only does it now."""
    STAGE_KINDS.names()


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
    schemas = stage_schemas()
    if is_dataclass(raw) and type(raw) in schemas.values():  # already typed (a recipe's stage schema)
        return raw
    if not isinstance(raw, (dict, DictConfig)):
        raise ConfigError(f"stages.{name} must be a mapping with a `kind`, got {raw!r}")
    kind = raw.get("kind")
    if kind not in schemas:
        raise ConfigError(f"stages.{name}.kind={kind!r} is not a stage kind; valid kinds: {', '.join(STAGE_KINDS.names())}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schemas[kind]), raw)
    except OmegaConfBaseException as err:
        first_line = str(err).splitlines()[0]
        valid = ", ".join(f.name for f in fields(schemas[kind]))
        raise ConfigError(f"stages.{name} ({kind}): {first_line}; valid keys: {valid}") from None
    return OmegaConf.to_object(merged)
