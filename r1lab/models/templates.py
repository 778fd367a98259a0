"""Prompt templates. The template used is recorded in the run's resolved config.

- ``r1_zero``: DeepSeek-R1-Zero's template for base models: a User/Assistant conversation where
  the reasoning goes in ``<think> </think>`` and the answer in ``<answer> </answer>``. The prompt
  ends with ``<think>``, so the model's response starts inside the reasoning.
- ``r1_zero_short``: the same conversation without the long instruction preamble, for tiny
  character-level models whose cost grows with every prompt character.
- ``direct``: the ``r1_zero_short`` conversation with the reasoning already closed, so the model
  answers without reasoning (the reasoning-vs-direct ablation): the prompt ends with
  ``<think>answer directly</think>\n<answer>`` and the model writes ``EXPR</answer>``. Why a
  closed, non-blank think block rather than a bare ``<answer>``: the response as rewards see it
  (``full_response``) is then ``<think>answer directly</think>\n<answer>EXPR</answer>``, R1's
  strict format, so the ``format`` reward, the format gate, the answer-span rules
  (``r1lab.rewards.spans``) and the eval's format rate read a direct answer as they read a
  reasoned one (Qwen3 turns thinking off the same way, with an empty think block; ours is
  non-blank because the strict format refuses blank reasoning). Its cold-start traces are the
  answer only (``answer_only``; ``r1lab.tasks.countdown_traces.answer_only_trace``).
- ``chat``: the model's own chat template (instruct models), generation prompt added.
- ``none``: the question as it is.
"""
from __future__ import annotations

R1_ZERO_PREAMBLE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think> <answer> answer here </answer>."
)

TEMPLATES = ("r1_zero", "r1_zero_short", "direct", "chat", "none")

# What the `direct` prompt has already written of the response: the reasoning, closed, and the
# answer tag opened (module docstring).
DIRECT_OPENED = "<think>answer directly</think>\n<answer>"

# Checkpoints r1lab writes carry the template they were trained with in tokenizer_config.json,
# so a later run that loads one with another template is told (its prompts would not match).
TEMPLATE_KEY = "r1lab_template"


def record_template(tokenizer, template: str) -> None:
    """Make ``tokenizer.save_pretrained`` write ``template`` into tokenizer_config.json."""
    tokenizer.init_kwargs[TEMPLATE_KEY] = template


def recorded_template(tokenizer) -> str | None:
    """The template the checkpoint this tokenizer came from was trained with (None: unknown)."""
    return tokenizer.init_kwargs.get(TEMPLATE_KEY)


def opens_think(template: str) -> bool:
    """Whether the prompt ends with ``<think>``: then the response is scored as ``<think>`` + text."""
    return template in ("r1_zero", "r1_zero_short")


def answer_only(template: str) -> bool:
    """Whether the prompt asks for the answer alone (``direct``): the model writes no reasoning,
    and its cold-start traces are the answer only."""
    return template == "direct"


def opened_response(template: str) -> str:
    """The part of the response the prompt already wrote: ``<think>``, ``DIRECT_OPENED`` or ``""``."""
    if opens_think(template):
        return "<think>"
    return DIRECT_OPENED if answer_only(template) else ""


def render_prompt(template: str, question: str, tokenizer=None) -> str:
    if template == "r1_zero":
        return f"{R1_ZERO_PREAMBLE}\nUser: {question}\nAssistant: <think>"
    if template == "r1_zero_short":
        return f"User: {question}\nAssistant: <think>"
    if template == "direct":
        return f"User: {question}\nAssistant: {DIRECT_OPENED}"
    if template == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "model.template=chat but the tokenizer has no chat template; "
                "use model.template=r1_zero for base models"
            )
        messages = [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if template == "none":
        return question
    raise ValueError(f"model.template={template!r}; valid: {', '.join(TEMPLATES)}")


def full_response(template: str, response: str) -> str:
    """The model's whole response as rewards see it (with what the prompt opened: ``<think>``, or
    ``direct``'s closed reasoning and ``<answer>``)."""
    return opened_response(template) + response


def encode_prompt(tokenizer, template: str, question: str) -> list[int]:
    """Token ids of the rendered prompt (a chat template already holds its special tokens)."""
    text = render_prompt(template, question, tokenizer)
    return tokenizer(text, add_special_tokens=template != "chat").input_ids
