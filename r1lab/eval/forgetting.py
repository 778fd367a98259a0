"""What RL costs elsewhere: forgetting, measured on text and questions no stage trains on.

Two measures, both shipped with the package (``r1lab/data/samples/``, nothing downloaded), run on
every evaluated model when ``eval.forgetting`` is on (eval.json's ``forgetting``), so the 00-start
figures and each stage's show what training on reasoning did to the rest:

* ``general_text``: perplexity of held-out general English prose (``general_text.txt``: 30 short
  encyclopedic paragraphs). The paragraphs are joined by blank lines, tokenized once, and cut into
  windows of the model's context (``max_position_embeddings``); each window opens with the
  tokenizer's BOS token when it has one, so every text token is predicted (without one, the first
  token of each window is not). ``nll`` is the mean negative log-likelihood per text token in
  nats, ``perplexity`` its exp; the model runs in eval mode (no dropout). Comparable across the
  stages of a run (same tokenizer, same context), not across tokenizers.
* ``general_qa``: 60 one-word factual and lexical questions (``general_qa.jsonl``: capitals,
  opposites, plurals, past tenses, simple facts; each row ``question`` and ``answers``, its
  accepted words), asked in the run's template through the rollout engine, greedily. The answer
  text is the graded ``<answer>`` when there is one, else the text after the reasoning
  (``r1lab.rewards.spans``: a response cut off mid-reasoning has none). ``accuracy``: an accepted
  answer appears in it as whole words (lenient); ``last_word_accuracy``: its last word is one
  (stricter). Both after lower-casing and turning every non-alphanumeric character into a space
  (``\\boxed{Paris}`` answers ``paris``).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

import torch

from r1lab.data import SAMPLES_DIR
from r1lab.engine import dist
from r1lab.models.forward import causal_lm, token_logprobs
from r1lab.models.templates import encode_prompt, full_response
from r1lab.rewards.spans import after_think, last_answer_span
from r1lab.rollout.engine import RolloutEngine, SamplingParams

GENERAL_TEXT = SAMPLES_DIR / "general_text.txt"
GENERAL_QA = SAMPLES_DIR / "general_qa.jsonl"
DEFAULT_CONTEXT = 2048  # a model whose config states no context length
_NON_WORD = re.compile(r"[^a-z0-9]+")


def load_general_text(path: str | Path = GENERAL_TEXT) -> str:
    """The paragraphs of ``path`` (separated by blank lines) joined by one blank line each."""
    paragraphs = [p.strip() for p in Path(path).read_text().split("\n\n") if p.strip()]
    if not paragraphs:
        raise ValueError(f"{path} holds no text")
    return "\n\n".join(paragraphs)


def load_general_qa(path: str | Path = GENERAL_QA) -> list[dict[str, Any]]:
    """The questions of ``path``: rows with ``question`` (text) and ``answers`` (accepted words)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    for i, row in enumerate(rows):
        if not isinstance(row.get("question"), str) or not row.get("answers"):
            raise ValueError(f"row {i} of {path}: needs 'question' (text) and 'answers' (a non-empty list of words)")
    return rows


def model_context(model: torch.nn.Module) -> int:
    """The longest sequence ``model`` takes, in tokens (its config's ``max_position_embeddings``)."""
    return int(getattr(causal_lm(model).config, "max_position_embeddings", 0) or DEFAULT_CONTEXT)


def text_windows(ids: Sequence[int], context: int, bos: int | None) -> list[list[int]]:
    """``ids`` cut into windows of at most ``context`` tokens, each opened by ``bos`` when given.

    >>> text_windows([5, 6, 7, 8, 9], 3, bos=1)
    [[1, 5, 6], [1, 7, 8], [1, 9]]
    """
    if context < 2:
        raise ValueError(f"a context of {context} tokens predicts nothing; it must be >= 2")
    step = context - 1 if bos is not None else context
    prefix = [bos] if bos is not None else []
    return [prefix + list(ids[i:i + step]) for i in range(0, len(ids), step)]


@torch.no_grad()
def text_nll(model: torch.nn.Module, tokenizer, text: str, context: int | None = None, batch_size: int = 8) -> dict[str, float]:
    """Token-level NLL of ``text`` under ``model`` in windows of ``context`` tokens (default: the
    model's); ``{"nll", "perplexity", "num_tokens", "context"}`` (module docstring)."""
    context = context or model_context(model)
    bos = tokenizer.bos_token_id
    windows = text_windows(tokenizer(text, add_special_tokens=False).input_ids, context, bos)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()  # no dropout: the figure is the model's, not a draw
    total, count = 0.0, 0
    try:
        for start in range(0, len(windows), batch_size):
            batch = windows[start:start + batch_size]
            width = max(len(w) for w in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)  # [B, T] right padded
            mask = torch.zeros((len(batch), width), dtype=torch.long)  # [B, T]
            for i, w in enumerate(batch):
                ids[i, :len(w)] = torch.tensor(w)
                mask[i, :len(w)] = 1
            ids, mask = ids.to(device), mask.to(device)
            logp, _ = token_logprobs(model, ids, mask, mask)  # [B, T-1], 0 off the mask
            scored = mask[:, 1:]  # [B, T-1] every window token after the first (BOS or not)
            total -= float((logp.float() * scored).sum())
            count += int(scored.sum())
    finally:
        model.train(was_training)
    nll = total / count if count else float("nan")
    return {"nll": nll, "perplexity": math.exp(nll) if count else float("nan"), "num_tokens": count, "context": context}


def words(text: str) -> list[str]:
    """The lower-cased alphanumeric words of ``text``.

    >>> words("\\\\boxed{Paris}.")
    ['boxed', 'paris']
    """
    return _NON_WORD.sub(" ", text.lower()).split()


def answer_text(response: str) -> str:
    """The answer part of a full response (module docstring); ``""`` when it was cut off mid-reasoning."""
    span = last_answer_span(response)
    if span is not None:
        return span
    return after_think(response) or ""


def qa_scores(response: str, answers: Sequence[str]) -> tuple[bool, bool]:
    """(lenient, last word) correctness of one full response against its accepted ``answers``.

    >>> qa_scores("<think>hmm</think><answer>It is Paris.</answer>", ["Paris"])
    (True, True)
    >>> qa_scores("<think>Paris?</think><answer>Paris or Lyon</answer>", ["Paris"])
    (True, False)
    """
    got = words(answer_text(response))
    lenient = last = False
    for accepted in answers:
        want = words(accepted)
        if not want:
            continue
        n = len(want)
        lenient |= any(got[i:i + n] == want for i in range(len(got) - n + 1))
        last |= got[-n:] == want
    return lenient, last


def general_qa(engine: RolloutEngine, tokenizer, template: str, rows: list[dict[str, Any]], max_new_tokens: int,
               batch_size: int = 0) -> dict[str, Any]:
    """Greedy answers of ``rows`` (``load_general_qa``) in ``template``, sharded over ranks, scored."""
    prompts = [encode_prompt(tokenizer, template, r["question"]) for r in rows]
    params = SamplingParams(max_new_tokens, temperature=0.0)

    def answer(indices: list[int]) -> list[str]:
        if not indices:
            return []
        return [c.text for c in engine.generate([prompts[i] for i in indices], params, None, batch_size)]

    texts = dist.map_sharded(len(rows), answer)
    scores = [qa_scores(full_response(template, t), r["answers"]) for t, r in zip(texts, rows)]
    by_kind: dict[str, list[bool]] = {}
    for (lenient, _), r in zip(scores, rows):
        by_kind.setdefault(str(r.get("kind", "all")), []).append(lenient)
    n = len(rows)
    return {
        "accuracy": sum(s[0] for s in scores) / n if n else 0.0,
        "last_word_accuracy": sum(s[1] for s in scores) / n if n else 0.0,
        "num_questions": n,
        "by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
    }


def forgetting_figures(engine: RolloutEngine, model: torch.nn.Module, tokenizer, template: str, max_new_tokens: int,
                       batch_size: int = 0) -> dict[str, Any]:
    """eval.json's ``forgetting``: ``general_text`` and ``general_qa`` of the shipped files."""
    return {
        "general_text": text_nll(model, tokenizer, load_general_text()),
        "general_qa": general_qa(engine, tokenizer, template, load_general_qa(), max_new_tokens, batch_size),
    }
