"""A learned reward model as a reward component, and per-prompt routing between it and the rules.

DeepSeek-R1 trains reasoning prompts with rule rewards only (a neural reward model invites reward
hacking) and uses reward models for general data in its last RL stage. Two registered rewards:

* ``reward_model``: a sequence-classification model (``AutoModelForSequenceClassification``, hub
  id or path; TRL's ``RewardTrainer`` layout: one logit = the score) scores each completion,
  after the prompt when a ``prompt`` or ``question`` column is passed, else alone. Batched,
  right-padded, no gradient; loaded on first use and cached for the process.
* ``routed``: per row, the weighted rule rewards of ``routing`` (e.g. ``{countdown: 1.0,
  format: 0.1}``) where the column ``verifiable`` is true, the reward model where it is false.
  A missing ``verifiable`` column means every row is verifiable (the model is then never loaded).

Scores are normalised (``normalize``): ``sigmoid`` (default) maps them to (0, 1), the scale of the
0/1 rule rewards they are mixed with, row by row, so a score does not depend on what else is in
the batch; ``zscore`` standardises within each scored batch (mean 0, std 1; GRPO's group
normalisation then only sees relative scores); ``none`` keeps raw logits.

Both take parameters, set under their own name (GRPO: ``reward_params: {reward_model: {path:
my/rm, batch_size: 16}}``; ``routed`` has the same fields plus ``routing``), and are built by their
factories (``r1lab.rewards.build_rewards``). Which columns arrive is up to the task
(``Task.reward_columns``): the shipped tasks pass neither ``prompt`` nor ``verifiable`` yet, so
with them the reward model scores completions alone and ``routed`` applies the rules everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from r1lab.rewards.registry import RewardFn, combine_rewards, register_reward

NORMALIZERS = ("sigmoid", "zscore", "none")


@dataclass
class RewardModelParams:
    """The ``reward_model`` reward's parameters."""

    path: str | None = None  # hub id or local folder of a sequence-classification model
    batch_size: int = 16  # sequences per forward pass
    normalize: str = "sigmoid"  # sigmoid | zscore | none

    def __post_init__(self) -> None:
        if self.path is not None and not isinstance(self.path, str):
            raise ValueError(f"path must be a hub id or folder, got {self.path!r}")
        if self.normalize not in NORMALIZERS:
            raise ValueError(f"normalize={self.normalize!r}; valid: {', '.join(NORMALIZERS)}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")


@dataclass
class RoutedParams(RewardModelParams):
    """The ``routed`` reward's parameters: its reward model's, and the rule rewards of verifiable rows."""

    routing: dict[str, float] = field(default_factory=dict)  # rule reward name -> weight, on verifiable rows

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.routing, Mapping):
            raise ValueError(f"routing must map rule reward names to weights, got {self.routing!r}")
        if "routed" in self.routing:
            raise ValueError("routing cannot contain `routed` itself")


_loaded: dict[str, Any] = {}  # path -> (model, tokenizer), at most one entry: a process-wide cache


def _load(params: RewardModelParams, name: str = "reward_model"):
    if params.path is None:
        raise ValueError(
            f"the `{name}` reward needs a model: set reward_params.{name}.path in the GRPO stage "
            "(a sequence-classification model, hub id or folder)"
        )
    if params.path not in _loaded:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(params.path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
        model = AutoModelForSequenceClassification.from_pretrained(params.path).to(device).eval().requires_grad_(False)
        if model.config.pad_token_id is None:  # the model finds each row's last token by it
            model.config.pad_token_id = tokenizer.pad_token_id
        _loaded.clear()  # a new path unloads the old model
        _loaded[params.path] = (model, tokenizer)
    return _loaded[params.path]


def normalize_scores(scores: torch.Tensor, how: str) -> torch.Tensor:
    """``[N]`` raw scores -> ``[N]`` rewards.

    >>> [round(x, 3) for x in normalize_scores(torch.tensor([0.0, 2.0]), "sigmoid").tolist()]
    [0.5, 0.881]
    >>> normalize_scores(torch.tensor([1.0, 3.0]), "zscore").tolist()
    [-1.0, 1.0]
    """
    if how == "sigmoid":
        return torch.sigmoid(scores)
    if how == "zscore":
        if scores.numel() < 2:
            return torch.zeros_like(scores)
        return (scores - scores.mean()) / scores.std(unbiased=False).clamp(min=1e-6)
    if how == "none":
        return scores
    raise ValueError(f"normalize={how!r}; valid: {', '.join(NORMALIZERS)}")


@torch.no_grad()
def raw_scores(texts: Sequence[str], params: RewardModelParams, name: str = "reward_model") -> torch.Tensor:
    """``[N]`` float32 reward-model logits (the last label's when it has several); the model loads
    on first use and stays cached for the process."""
    model, tokenizer = _load(params, name)
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), params.batch_size):
        batch = tokenizer(list(texts[start : start + params.batch_size]), return_tensors="pt", padding=True)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits  # [b, num_labels]
        out.append(logits[:, -1].float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


@register_reward("reward_model", params=RewardModelParams)
def make_reward_model(params: RewardModelParams, name: str = "reward_model") -> RewardFn:
    """The ``reward_model`` reward with ``params``; ``name``: whose parameters, for the errors."""

    def reward_model(completions: Sequence[str], prompt: Sequence[str] | None = None, question: Sequence[str] | None = None, **_) -> torch.Tensor:
        """``[N]`` float32 normalised reward-model scores of (prompt +) completion."""
        prompts = prompt if prompt is not None else question
        texts = [p + c for p, c in zip(prompts, completions)] if prompts is not None else list(completions)
        return normalize_scores(raw_scores(texts, params, name), params.normalize)

    return reward_model


@register_reward("routed", params=RoutedParams)
def make_routed(params: RoutedParams) -> RewardFn:
    """The ``routed`` reward with ``params``: its model's fields, and ``routing``."""
    model_score = make_reward_model(params, name="routed")

    def rules(completions: list[str], **columns) -> torch.Tensor:
        if not params.routing:
            raise ValueError(
                "the `routed` reward needs reward_params.routed.routing (rule rewards and weights, e.g. {countdown: 1.0})"
            )
        return combine_rewards(params.routing, completions, columns).total

    def routed(completions: Sequence[str], verifiable: Sequence[bool] | None = None, **columns) -> torch.Tensor:
        """``[N]`` float32: rule rewards (``routing`` weights) on verifiable rows, the reward model on the others."""
        n = len(completions)
        flags = [True] * n if verifiable is None else [True if v is None else bool(v) for v in verifiable]
        out = torch.zeros(n, dtype=torch.float32)
        for want, score in ((True, rules), (False, model_score)):
            idx = [i for i in range(n) if flags[i] == want]
            if idx:
                sub = {k: [v[i] for i in idx] for k, v in columns.items()}
                out[idx] = score([completions[i] for i in idx], **sub)
        return out

    return routed
