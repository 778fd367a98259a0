"""Data fields that name a dataset folder (as published on the Hub) or a hub id, read by
``datasets.load_dataset`` with a split, a subset and a column mapping (``r1lab.data.files.load_source``)."""
import json
from types import SimpleNamespace

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, DatasetDict
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError

from r1lab.config.schema import TaskConfig
from r1lab.tasks.countdown import CountdownTaskConfig
from r1lab.tasks.math import MathTaskConfig
from r1lab.data.files import SAMPLES_DIR, load_source, load_table
from r1lab.stages.dpo import DPOStageConfig
from r1lab.stages.rejection import RejectionStageConfig
from r1lab.stages.sft import SFTStageConfig
from r1lab.tasks import build_task
from r1lab.validate import ConfigError, typed_stage

SMALL = dict(num_train=10, num_test=5, num_test_hard=0)  # generated splits kept small

GSM8K_TRAIN = [
    {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
    {"question": "A book costs 1,000 cents twice. Total?", "answer": "2 * 1000 = 2000\n#### 2,000"},
]
GSM8K_TEST = [{"question": "What is 6 times 7?", "answer": "6 * 7 = 42\n#### 42"}]
SOCRATIC_TRAIN = [{"question": "How many legs do 2 cats have?", "answer": "How many per cat? 4\n2 * 4 = 8\n#### 8"}]
SOCRATIC_TEST = [{"question": "What is 10 minus 3?", "answer": "What is left? 10 - 3 = 7\n#### 7"}]


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _parquet(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _card(folder, configs: dict[str, dict[str, str]]):
    """A README.md dataset card whose YAML front matter lists ``configs`` as the Hub does."""
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        for split, path in splits.items():
            lines += [f"  - split: {split}", f"    path: {path}"]
    lines += ["---", "", "# A test dataset", ""]
    (folder / "README.md").write_text("\n".join(lines))


@pytest.fixture(autouse=True)
def _own_datasets_cache(tmp_path, monkeypatch):
    """load_dataset's arrow cache goes to tmp_path, not the user's Hugging Face cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


@pytest.fixture
def gsm8k_folder(tmp_path):
    """Like openai/gsm8k: configs main and socratic, parquet files per split."""
    root = tmp_path / "gsm8k"
    _parquet(root / "main" / "train-00000-of-00001.parquet", GSM8K_TRAIN)
    _parquet(root / "main" / "test-00000-of-00001.parquet", GSM8K_TEST)
    _parquet(root / "socratic" / "train-00000-of-00001.parquet", SOCRATIC_TRAIN)  # one format per dataset, as
    _parquet(root / "socratic" / "test-00000-of-00001.parquet", SOCRATIC_TEST)  # load_dataset picks one builder
    _card(
        root,
        {
            "main": {"train": "main/train-*", "test": "main/test-*"},
            "socratic": {"train": "socratic/train-00000-of-00001.parquet", "test": "socratic/test-*"},
        },
    )
    return root


@pytest.fixture
def countdown_folder(tmp_path):
    """Like Jiayi-Pan/Countdown-Tasks-3to4: columns target and nums, one train split."""
    root = tmp_path / "countdown_tasks"
    _parquet(root / "data" / "train-00000-of-00001.parquet", [{"target": 22, "nums": [3, 5, 7]}, {"target": 5, "nums": [1, 1]}])
    _card(root, {"default": {"train": "data/train-*"}})
    return root


def test_math_task_from_a_dataset_folder_with_subset_and_splits(gsm8k_folder):
    main = build_task(MathTaskConfig(train_file=str(gsm8k_folder), test_file=str(gsm8k_folder), subset="main"))
    assert main.split("train").to_list() == [
        {"id": "gsm8k_train-0", "question": GSM8K_TRAIN[0]["question"], "answer": "7", "level": None},
        {"id": "gsm8k_train-1", "question": GSM8K_TRAIN[1]["question"], "answer": "2000", "level": None},
    ]
    assert main.split("test").to_list() == [{"id": "gsm8k_test-0", "question": GSM8K_TEST[0]["question"], "answer": "42", "level": None}]
    socratic = build_task(
        MathTaskConfig(train_file=str(gsm8k_folder), test_file=str(gsm8k_folder), subset="socratic", train_split="test", test_split="train")
    )
    assert socratic.split("train")["answer"] == ["7"] and socratic.split("test")["answer"] == ["8"]


def test_a_folder_goes_through_load_dataset_like_a_hub_id(gsm8k_folder, monkeypatch):
    calls = []
    real = datasets.load_dataset

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    ds = load_source(str(gsm8k_folder), "task.train_file", split="test", subset="main", columns={"prompt": "question"})
    assert calls == [((str(gsm8k_folder), "main"), {"split": "test"})]
    assert ds.column_names == ["prompt", "answer"] and ds[0]["prompt"] == GSM8K_TEST[0]["question"]


def test_column_mapping_countdown_tasks(countdown_folder):
    task = build_task(CountdownTaskConfig(**SMALL, train_file=str(countdown_folder), columns={"numbers": "nums"}))
    assert task.split("train").to_list() == [
        {"id": "cd3-3_5_7-22", "numbers": [3, 5, 7], "target": 22, "solution": "3*5+7"},
        {"id": "cd2-1_1-5", "numbers": [1, 1], "target": 5, "solution": ""},
    ]
    assert len(task.split("test")) == 5  # no test_file: the generated held-out split


def test_math_layouts_through_a_mapping(tmp_path):
    boxed = tmp_path / "mathish"  # MATH's layout: problem/solution, the answer in \\boxed{}
    row = {"problem": "1/2 + 1/2?", "solution": "It is $\\boxed{1}$.", "level": "Level 1", "answer": "1"}
    _jsonl(boxed / "train.jsonl", [row])
    _jsonl(boxed / "test.jsonl", [row])
    _card(boxed, {"default": {"train": "train.jsonl", "test": "test.jsonl"}})
    train = build_task(MathTaskConfig(train_file=str(boxed), test_file=str(boxed))).split("train")
    assert train.to_list() == [{"id": "mathish_train-0", "question": "1/2 + 1/2?", "answer": "1", "level": "Level 1"}]
    bare = tmp_path / "bare"  # other column names, bare answers: mapped onto the normalised layout
    _jsonl(bare / "data" / "train.jsonl", [{"prompt": "2+2?", "final": "4", "uid": "q7"}])
    _jsonl(bare / "data" / "test.jsonl", [{"prompt": "3+3?", "final": "6", "uid": "q8"}])
    task = build_task(
        MathTaskConfig(train_file=str(bare), test_file=str(bare), columns={"question": "prompt", "answer": "final", "id": "uid"})
    )  # no dataset card: load_dataset finds the splits by file name
    assert task.split("train").to_list() == [{"id": "q7", "question": "2+2?", "answer": "4", "level": None}]
    assert task.split("test")["answer"] == ["6"]
    with pytest.raises(ValueError, match=r"match no math layout; .*; map the dataset's columns to one of them with task\.columns"):
        build_task(MathTaskConfig(train_file=str(bare), test_file=str(bare)))


def test_unreadable_dataset_folder_is_one_line(tmp_path):
    root = tmp_path / "mixed"  # splits whose columns differ
    _jsonl(root / "train.jsonl", [{"a": 1}])
    _jsonl(root / "test.jsonl", [{"b": "x"}])
    with pytest.raises(ValueError) as e:
        load_source(str(root), "stages.dpo.data")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"stages.dpo.data='{root}': datasets.load_dataset failed (DatasetGenerationError: ")
    assert "column names don't match" in msg


def test_sft_data_folder_of_chat_rows(tmp_path):
    from r1lab.models.tiny import char_tokenizer
    from r1lab.stages.sft import load_examples

    root = tmp_path / "chat"
    rows = [  # like HuggingFaceH4/ultrachat_200k: a bare `prompt` beside `messages`, split train_sft
        {"prompt": "Hi", "prompt_id": "a", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
        {"prompt": "2+2?", "prompt_id": "b", "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
    ]
    _parquet(root / "data" / "train_sft-00000-of-00001.parquet", rows)
    _card(root, {"default": {"train_sft": "data/train_sft-*"}})
    cfg = typed_stage("sft", {"kind": "sft", "data": str(root), "data_split": "train_sft", "data_columns": {"conversation": "messages"}})
    ctx = SimpleNamespace(cfg=cfg, stage=SimpleNamespace(name="sft"), run=SimpleNamespace(model=SimpleNamespace(template="r1_zero_short")))
    tok = char_tokenizer()
    with pytest.raises(ValueError, match=r"missing column\(s\) 'response' .*map them from the dataset's columns with stages\.sft\.data_columns"):
        load_examples(ctx, tok)  # `messages` renamed away: prompt alone is not enough
    ctx.cfg = typed_stage("sft", {"kind": "sft", "data": str(root), "data_split": "train_sft"})
    examples = load_examples(ctx, tok)
    responses = [tok.decode(r, skip_special_tokens=True).strip() for _, r in examples]
    assert responses == ["Hello!", "4"]
    assert "Hi" in tok.decode(examples[0][0], skip_special_tokens=True)


def test_wrong_column_mapping_is_one_line(countdown_folder):
    with pytest.raises(ValueError) as e:
        build_task(CountdownTaskConfig(**SMALL, train_file=str(countdown_folder), columns={"numbers": "numbrs"}))
    assert str(e.value) == (
        f"task.columns: task.train_file '{countdown_folder}' has no column 'numbrs' (mapped to 'numbers'); "
        "its columns: target, nums; map 'numbers' to one of them"
    )
    with pytest.raises(ValueError, match=r"^task.train_file '.*' is missing column\(s\) 'numbers' \(found: target, nums\); map them .* task\.columns"):
        build_task(CountdownTaskConfig(**SMALL, train_file=str(countdown_folder)))


def test_wrong_subset_or_split_names_the_field(gsm8k_folder):
    folder = str(gsm8k_folder)
    with pytest.raises(ValueError) as e:
        build_task(MathTaskConfig(train_file=folder, test_file=folder, subset="nope"))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"task.train_file='{folder}' with task.subset='nope': ")
    assert "'main', 'socratic'" in msg and msg.endswith("set task.subset to one of them")
    with pytest.raises(ValueError) as e:
        build_task(MathTaskConfig(train_file=folder, test_file=folder))  # two configs, none chosen
    assert "\n" not in str(e.value) and "task.subset=None" in str(e.value)
    with pytest.raises(ValueError) as e:
        build_task(MathTaskConfig(train_file=folder, test_file=folder, subset="main", test_split="validation"))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"task.test_file='{folder}' with task.test_split='validation': ")
    assert msg.endswith("set task.test_split to one of them")


def test_missing_hub_id_offline_is_one_line():
    assert datasets.config.HF_HUB_OFFLINE or __import__("os").environ.get("HF_DATASETS_OFFLINE") == "1"
    with pytest.raises(ValueError) as e:
        build_task(MathTaskConfig(train_file="nobody-r1lab/no-such-dataset", test_file="nobody-r1lab/no-such-dataset", subset="main"))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(
        "task.train_file='nobody-r1lab/no-such-dataset': not a file, a folder, or a dataset in the local "
        "Hugging Face cache (HF_DATASETS_OFFLINE=1); "
    )
    with pytest.raises(ValueError, match=r"^stages\.sft\.data='gsm8k': not a file, a folder, or a dataset in the local"):
        load_source("gsm8k", "stages.sft.data")


def test_missing_paths_and_files_are_unchanged(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match="does not exist; set task.train_file to a .jsonl"):
        build_task(CountdownTaskConfig(**SMALL, train_file=str(missing)))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_source("data/problems.parquet")  # a file name, never a hub id
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"^dataset file '.*empty' is a directory without data files"):
        load_table(tmp_path / "empty")


def test_existing_files_load_and_take_a_mapping(tmp_path):
    path = tmp_path / "cd.jsonl"
    _jsonl(path, [{"nums": [3, 5, 7], "target": 22}])
    task = build_task(CountdownTaskConfig(**SMALL, train_file=str(path), columns={"numbers": "nums"}, train_split="ignored"))
    assert task.split("train")["numbers"] == [[3, 5, 7]]
    gsm = build_task(MathTaskConfig(train_file=str(SAMPLES_DIR / "gsm8k_sample.jsonl"), test_file=str(SAMPLES_DIR / "math_sample.jsonl")))
    assert gsm.split("train")[0]["id"] == "gsm8k_sample-0" and gsm.split("test")[0]["id"].startswith("math_sample-")
    chat = load_table(SAMPLES_DIR / "chat_sample.jsonl", columns={"conversation": "messages"})
    assert "conversation" in chat.column_names and "messages" not in chat.column_names


def test_save_to_disk_folders(tmp_path):
    Dataset.from_list([{"prompt": "p", "response": "r"}]).save_to_disk(str(tmp_path / "one"))
    assert load_source(str(tmp_path / "one"), "stages.sft.data").to_list() == [{"prompt": "p", "response": "r"}]
    DatasetDict({"train": Dataset.from_list([{"a": 1}]), "dev": Dataset.from_list([{"a": 2}])}).save_to_disk(str(tmp_path / "dd"))
    assert load_source(str(tmp_path / "dd"), "x", split="dev", columns={"b": "a"}).to_list() == [{"b": 2}]
    with pytest.raises(ValueError, match=r"^x='.*dd' with stages.x.data_split='test': the saved dataset has splits train, dev"):
        load_source(str(tmp_path / "dd"), "x", split="test", option_fields={"split": "stages.x.data_split"})


def test_load_options_are_typed_fields():
    assert TaskConfig().train_split == "train" and TaskConfig().test_split == "test" and TaskConfig().columns == {}
    with pytest.raises(ConfigKeyError):
        OmegaConf.merge(OmegaConf.structured(TaskConfig), {"colums": {"numbers": "nums"}})
    for schema, names in ((SFTStageConfig, "data"), (DPOStageConfig, "data"), (RejectionStageConfig, "mix")):
        cfg = schema()
        assert getattr(cfg, f"{names}_split") == "train" and getattr(cfg, f"{names}_subset") is None
        assert getattr(cfg, f"{names}_columns") == {}
    with pytest.raises(ConfigError, match="data_colums"):
        typed_stage("sft", {"kind": "sft", "data_colums": {"a": "b"}})
