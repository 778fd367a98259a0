"""Tests run offline on a CPU: no hub, no W&B account, DeepSpeed on gloo.

Torch threads: ``R1LAB_TEST_THREADS`` (default 1) per test process, set here and again before
every test (a test or vLLM's start-up may change it). `make test` runs several pytest-xdist
workers, one a core: one thread each keeps them from spinning against each other. Other counts
(``R1LAB_TEST_THREADS=2 make test``) are for flushing out tests that depend on the rounding of one
thread count. Child processes (the CLI, torchrun) get ``OMP_NUM_THREADS`` and the tests'
``engine.num_threads`` from the same number (`tests.helpers.THREADS`).

Under xdist (``--dist loadfile``) a test file runs whole on one worker, so its module fixtures
(a trained model, a vLLM engine, a straight pipeline run) are built once. The longest files are
handed out first (`LONG_FIRST`), so no worker is left with one at the end; the two files of
multi-process tests (torchrun, 2 ranks each) are the 2nd and 4th, which xdist's first round of
two files per worker gives to the same worker of two: they never run at once on 2 cores
(with more workers there are cores for both). (``--dist loadgroup`` would
say this with ``xdist_group`` marks, but xdist 3.8 does not group under pytest 9: it renames
``item._nodeid``, which pytest 9 no longer reads.)
"""
import os

THREADS = int(os.environ.get("R1LAB_TEST_THREADS", "1"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["R1LAB_TEST_THREADS"] = str(THREADS)
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(THREADS)

# Files by measured duration (2 cores, 2026-12-07), longest first; only the order they are handed
# to the workers depends on this list. A file not listed follows them in collection order.
LONG_FIRST = [
    "tests/rollout/test_vllm_pipeline.py",  # ~180 s
    "tests/distributed/test_data_parallel.py",  # ~40 s, torchrun: 2nd, on the worker of the 4th
    "tests/rollout/test_async_rollouts.py",
    "tests/distributed/test_vllm_zero3.py",  # ~60 s, torchrun: 4th
    "tests/eval/test_studies.py",  # ~100 s
    "tests/test_contributor_package.py",  # ~70 s
    "tests/stages/test_stage_cache.py",
    "tests/models/test_packaged_model.py",  # ~85 s
    "tests/test_cli_errors.py",  # ~80 s
    "tests/recipes/test_recipes.py",  # ~75 s
    "tests/test_resume_full_pipeline.py",  # ~65 s
    "tests/models/test_real_model_stages.py",
    "tests/engine/test_resume_cli.py",
    "tests/eval/test_cli.py",
    "tests/rollout/test_engines_real_model.py",
    "tests/stages/test_eval_during_training.py",
    "tests/test_pipeline_e2e.py",
    "tests/stages/test_grpo_entropy_term.py",
    "tests/rollout/test_tool_calls.py",
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(LONG_FIRST)))  # stable: a file stays together


@pytest.fixture(autouse=True)
def _torch_threads():
    torch.set_num_threads(THREADS)
