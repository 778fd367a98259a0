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

Settings live in this module, set by ``configure_reward_model`` (the GRPO stage calls it from
``reward_model_*`` and ``reward_routing``), because rewards only receive completions and columns.
Which columns arrive is up to the task (``Task.reward_columns``): the shipped tasks pass neither
``prompt`` nor ``verifiable`` yet, so with them the reward model scores completions alone and
``routed`` applies the rules everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from r1lab.rewards.registry import combine_rewards, register_reward

NORMALIZERS = ("sigmoid", "zscore", "none")


@dataclass
class RewardModelSettings:
    path: str | None = None  # hub id or local folder of a sequence-classification model
    batch_size: int = 16  # sequences per forward pass
    normalize: str = "sigmoid"  # sigmoid | zscore | none
    routing: dict[str, float] = field(default_factory=dict)  # rule rewards of `routed` on verifiable rows


_settings = RewardModelSettings()
_loaded: dict[str, Any] = {}  # path -> (model, tokenizer), at most one entry


def configure_reward_model(
    path: str | None, batch_size: int = 16, normalize: str = "sigmoid", routing: Mapping[str, float] | None = None
) -> None:
    """Set the reward model and routing; the model loads lazily on first use (a new path unloads the old)."""
    global _settings
    if normalize not in NORMALIZERS:
        raise ValueError(f"reward_model_normalize={normalize!r}; valid: {', '.join(NORMALIZERS)}")
    if batch_size < 1:
        raise ValueError(f"reward_model_batch_size must be >= 1, got {batch_size}")
    if routing and "routed" in routing:
        raise ValueError("reward_routing cannot contain `routed` itself")
    if path != _settings.path:
        _loaded.clear()
    _settings = RewardModelSettings(path, batch_size, normalize, dict(routing or {}))


def _load():
    if _settings.path is None:
        raise ValueError(
            "the `reward_model` reward needs a model: set reward_model_path in the GRPO stage "
            "(a sequence-classification model, hub id or folder)"
        )
    if _settings.path not in _loaded:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(_settings.path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
        model = AutoModelForSequenceClassification.from_pretrained(_settings.path).to(device).eval().requires_grad_(False)
        if model.config.pad_token_id is None:  # the model finds each row's last token by it
            model.config.pad_token_id = tokenizer.pad_token_id
        _loaded.clear()
        _loaded[_settings.path] = (model, tokenizer)
    return _loaded[_settings.path]


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
def raw_scores(texts: Sequence[str]) -> torch.Tensor:
    """``[N]`` float32 reward-model logits (the last label's when it has several)."""
    model, tokenizer = _load()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), _settings.batch_size):
        batch = tokenizer(list(texts[start : start + _settings.batch_size]), return_tensors="pt", padding=True)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits  # [b, num_labels]
        out.append(logits[:, -1].float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


@register_reward("reward_model")
def reward_model(completions: Sequence[str], prompt: Sequence[str] | None = None, question: Sequence[str] | None = None, **_) -> torch.Tensor:
    """``[N]`` float32 normalised reward-model scores of (prompt +) completion."""
    prompts = prompt if prompt is not None else question
    texts = [p + c for p, c in zip(prompts, completions)] if prompts is not None else list(completions)
    return normalize_scores(raw_scores(texts), _settings.normalize)


@register_reward("routed")
def routed(completions: Sequence[str], verifiable: Sequence[bool] | None = None, **columns) -> torch.Tensor:
    """``[N]`` float32: rule rewards (``routing`` weights) on verifiable rows, the reward model on the others."""
    n = len(completions)
    flags = [True] * n if verifiable is None else [True if v is None else bool(v) for v in verifiable]
    out = torch.zeros(n, dtype=torch.float32)
    for want, score in ((True, _rules), (False, reward_model)):
        idx = [i for i in range(n) if flags[i] == want]
        if idx:
            sub = {k: [v[i] for i in idx] for k, v in columns.items()}
            out[idx] = score([completions[i] for i in idx], **sub)
    return out


def _rules(completions: list[str], **columns) -> torch.Tensor:
    if not _settings.routing:
        raise ValueError("the `routed` reward needs reward_routing (rule rewards and weights, e.g. {countdown: 1.0})")
    return combine_rewards(_settings.routing, completions, columns).total
