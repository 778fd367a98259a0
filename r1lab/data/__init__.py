"""Datasets for r1lab: the Countdown task (solver, generator, cold-start traces), math files, and
user-file loading with clear errors. Imports without DeepSpeed, W&B or a GPU."""
from r1lab.data.countdown import (
    generate_problems,
    is_solution,
    keys_of,
    make_splits,
    parse_expression,
    problem_id,
    problem_key,
    question_text,
    reachable_targets,
    solve,
)
from r1lab.data.files import SAMPLES_DIR, load_countdown_file, load_table, require_columns
from r1lab.data.math_data import gsm8k_answer, last_boxed, load_math_file
from r1lab.data.traces import make_sft_dataset, make_trace

__all__ = [
    "SAMPLES_DIR",
    "generate_problems",
    "gsm8k_answer",
    "is_solution",
    "keys_of",
    "last_boxed",
    "load_countdown_file",
    "load_math_file",
    "load_table",
    "make_sft_dataset",
    "make_splits",
    "make_trace",
    "parse_expression",
    "problem_id",
    "problem_key",
    "question_text",
    "reachable_targets",
    "require_columns",
    "solve",
]
