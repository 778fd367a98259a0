"""Tests run offline on a CPU: no hub, no W&B account, DeepSpeed on gloo.

Torch threads: ``R1LAB_TEST_THREADS`` (default 1) per test process, set here and again before
every test (a test or vLLM's start-up may change it). `make test` runs several pytest-xdist
workers, one a core: one thread each keeps them from spinning against each other. Other counts
(``R1LAB_TEST_THREADS=2 make test``) are for flushing out tests that depend on the rounding of one
thread count. Child processes (the CLI, torchrun) get ``OMP_NUM_THREADS`` and the tests'
``engine.num_threads`` from the same number (`tests.helpers.THREADS`).

Under xdist (``--dist loadgroup``) a test file runs whole on one worker, so its module fixtures
(a trained model, a vLLM engine, a straight pipeline run) are built once; the multi-process tests
(marker ``distributed``: torchrun with 2 ranks each) share one group, so two of them never run
at once. The longest files are scheduled first (`LONG_FIRST`), so no worker is left with one at
the end.
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
    "distributed",  # tests/distributed/test_data_parallel.py and test_vllm_zero3.py, ~100 s
    "tests/eval/test_studies.py",  # ~100 s
    "tests/models/test_packaged_model.py",  # ~85 s
    "tests/test_cli_errors.py",  # ~80 s
    "tests/recipes/test_recipes.py",  # ~75 s
    "tests/test_resume_full_pipeline.py",  # ~65 s
    "tests/engine/test_resume_cli.py",
    "tests/eval/test_cli.py",
    "tests/rollout/test_engines_real_model.py",
    "tests/models/test_real_model_stages.py",
    "tests/stages/test_eval_during_training.py",
    "tests/test_pipeline_e2e.py",
    "tests/stages/test_grpo_entropy_term.py",
    "tests/rollout/test_tool_calls.py",
]


def _group(item: pytest.Item) -> str:
    return "distributed" if item.get_closest_marker("distributed") else item.nodeid.split("::")[0]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(_group(item)))
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item), len(LONG_FIRST)))  # stable: the rest keep their order


@pytest.fixture(autouse=True)
def _torch_threads():
    torch.set_num_threads(THREADS)
