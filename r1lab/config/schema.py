"""Typed configuration: the one place where every option is declared, with its unit.

YAML files in ``configs/`` and ``recipes/`` hold values; these dataclasses hold the schema.
Hydra merges YAML onto the root schema, so a typo'd key or a wrong type in ``model``, ``task``,
``engine``, ``tracking`` or ``eval`` fails at start-up. ``task`` is typed by the chosen task's own
schema, a ``TaskConfig`` subclass declared next to the task's builder (``r1lab.tasks.countdown.
CountdownTaskConfig``, ...) and stored as that task's option of the ``task`` group. Stages are a mapping of stage name to
stage config whose schema depends on its ``kind``; ``r1lab.validate`` checks each one against the
schema its kind registered (``r1lab.stages.registry.STAGE_KINDS``) before anything runs. A stage
kind's schema is a ``StageConfig`` subclass that sets ``kind``, declared next to the kind's loop
(``r1lab.stages.sft.SFTStageConfig``, ...); the sub-configs several kinds share
(``SampledPromptsConfig``, ``ReadabilityConfig``, ``ToolsConfig``) and the rest of the run's
schema are here.

Batch sizes have one meaning each: ``prompts_per_step`` / ``batch_size`` are global (all ranks),
``micro_batch_per_device`` is per process; accumulation steps are derived, never configured.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING


@dataclass
class TinyModelConfig:
    """A small model built from config, with a character-level tokenizer made locally."""

    architecture: str = "llama"  # llama | qwen2
    hidden_size: int = 128  # width of the residual stream
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 4  # < num_heads gives grouped-query attention
    intermediate_size: int = 384  # MLP width
    max_position_embeddings: int = 512  # longest sequence, in tokens (= characters)
    init_seed: int = 0  # seed of the random initialisation


@dataclass
class LoRAConfig:
    """Low-rank adapters (LoRA, arXiv:2106.09685) via peft: only the adapters train.

    With LoRA the GRPO reference policy is the same model with its adapters switched off, so no
    second copy of the weights is held. Resumable checkpoints hold the adapters only."""

    enabled: bool = False
    r: int = 16  # rank of each adapter
    alpha: int = 32  # scaling numerator: the update is (alpha / r) * B @ A
    dropout: float = 0.0  # dropout on the adapter input; 0 keeps log-probs deterministic (GRPO)
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])  # module names adapted
    merge_on_save: bool = False  # the stage's exported checkpoint: merged full weights (True) or the adapter alone


@dataclass
class ModelConfig:
    name_or_path: str = MISSING  # hub id, local path, or "tiny" (built from `tiny`)
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    template: str = "r1_zero"  # prompt template: r1_zero | r1_zero_short | chat | none
    trust_remote_code: bool = False  # run code shipped with a hub model; off unless asked
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16
    revision: Optional[str] = None  # hub revision (branch, tag or commit)


@dataclass
class TaskConfig:
    """What every task's config holds: its name and the files read instead of generated problems.

    A task's own settings (how many problems it generates, how it words a question, how it reads
    an answer) are fields of a subclass declared in the task's module and registered with its
    builder (``r1lab.tasks.countdown.CountdownTaskConfig``, ...; ``r1lab.tasks.base.register_task``).
    ``task=<name>`` picks that schema, so ``task.num_train=64`` is typed by the chosen task's
    subclass and a key another task has fails at start-up."""

    name: str = "countdown"  # the registered task (r1lab.tasks.TASKS): countdown | math | arith | a plugin's; set by `task=<name>`
    # A data field takes a jsonl/json/parquet file, a save_to_disk folder, a dataset folder (data
    # files, optionally a README.md dataset card with `configs:`, as on the Hub) or a Hugging Face
    # dataset id; the last two are read by datasets.load_dataset(id, subset, split=...), offline
    # (HF_DATASETS_OFFLINE=1) from the local Hugging Face cache.
    train_file: Optional[str] = None  # problems instead of generated ones: file, folder or hub id (e.g. openai/gsm8k)
    test_file: Optional[str] = None  # held-out problems: file, folder or hub id
    train_split: str = "train"  # split of train_file read from a dataset folder or hub id (a file has none)
    test_split: str = "test"  # split of test_file read from a dataset folder or hub id
    subset: Optional[str] = None  # dataset config name of train_file and test_file (openai/gsm8k: main | socratic); null = the only one
    columns: dict[str, str] = field(default_factory=dict)  # task column -> dataset column, renamed on load, e.g. {numbers: nums}; math reads question/answer (GSM8K '#### n', or bare answers) or problem/solution (MATH, \boxed{})

    def check(self) -> None:
        """The task's own checks (a subclass's), run at start-up: ``ValueError`` naming the field."""


@dataclass
class EngineConfig:
    """DeepSpeed settings. `r1lab.engine` is the only module that reads them."""

    zero_stage: int = 0  # 0 (plain DDP), 1, 2 or 3
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16
    offload_optimizer: bool = False  # ZeRO optimizer state in CPU memory (compiles cpu_adam once)
    gradient_checkpointing: bool = False  # recompute activations in backward to save memory
    cpu_shm_allreduce: bool = False  # CPU only: DeepSpeed's shared-memory allreduce (4-min JIT build)
    num_threads: int = 0  # CPU only: torch threads per process; 0 = leave torch's default
    collective_timeout_minutes: float = 30.0  # a collective (all-reduce, barrier) waiting longer fails, naming rank and operation
    max_nonfinite_steps: int = 3  # a NaN/inf loss or gradient skips the step; this many consecutive skips stop training


@dataclass
class WandbConfig:
    mode: str = "offline"  # offline | online | disabled; online needs WANDB_API_KEY or `wandb login`
    project: str = "r1lab"
    entity: Optional[str] = None
    tags: list[str] = field(default_factory=list)


@dataclass
class TrackingConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    log_every: int = 1  # optimizer steps between metric records
    progress_bar: bool = True  # tqdm bar with steps, ETA and the latest reward
    # optimizer steps between completion tables (GRPO: prompt, completion, reward components;
    # plus the in-training evaluation's samples): `completions.jsonl` and W&B `completions/*`; 0 = off
    completions_every: int = 0
    completions_rows: int = 16  # rows per table: the first ones of rank 0's rollout / of the evaluation


@dataclass
class ToolsConfig:
    """Tools a rollout may call mid-reasoning (``r1lab.tools``, ``r1lab.rollout.tool_calls``).

    The model writes ``<tool>INPUT</tool>`` (``<tool>NAME: INPUT</tool>`` when several tools are
    enabled); sampling pauses there, the tool runs, its output is appended as
    ``<result>OUTPUT</result>`` (tokens the policy did not sample: masked from the loss) and
    sampling continues from the exact token ids so far. ``max_new_tokens`` of the stage counts
    sampled and tool tokens together."""

    names: list[str] = field(default_factory=list)  # enabled tools: calculator | countdown (checks an attempt at the row's own Countdown problem) | python; empty = no tool calls
    max_calls: int = 4  # tool calls per completion; a call past it gets an error result and ends tool use
    timeout_s: float = 5.0  # wall-clock limit of one call; a call that outlives it returns an error (and its process is killed)
    max_result_chars: int = 200  # longer tool outputs are cut to this many characters
    memory_mb: int = 512  # python: address-space limit of the sandboxed process


@dataclass
class EvalConfig:
    """Held-out evaluation run after every stage (and on the starting model)."""

    split: str = "test"  # task split to evaluate on
    num_problems: int = 500  # 0 = the whole split
    samples: int = 8  # k samples per problem for sampled accuracy (R1's pass@1) and pass@k
    temperature: float = 1.0  # sampling temperature of the k samples
    top_p: float = 1.0
    max_new_tokens: int = 256  # longest response, in tokens
    batch_size: int = 256  # sequences generated together
    initial: bool = True  # also evaluate the starting model
    language_reward: str = "language"  # registered reward for `language_consistency`: language (en) | language_zh
    every: int = 0  # during training: optimizer steps between evaluations on a subset (0 = off)
    every_num_problems: int = 100  # during training: the first N problems of the split
    every_samples: int = 4  # during training: samples per problem
    tools: ToolsConfig = field(default_factory=ToolsConfig)  # tools the evaluated model may call (a tool-trained model is evaluated with its tools)
    # --- what RL costs elsewhere, off by default (eval.json keys of the same names; r1lab.eval.suites) ---
    forgetting: bool = False  # perplexity of held-out general English and accuracy on 60 one-word general questions (shipped)
    faithfulness: bool = False  # share of completions whose final answer follows from their reasoning's last claim (text only, cheap)
    robustness: list[str] = field(default_factory=list)  # task perturbations evaluated beside the plain problems, e.g. [reorder, distractor, wording]


@dataclass
class RolloutConfig:
    """The engine every sampling stage draws completions from (``r1lab.rollout.engine``).

    ``hf``: r1lab's own decode loop on the training model. ``vllm``: an in-process vLLM engine
    on each rank (colocated), given the trainer's weights after every optimizer step. The other
    fields are vLLM's; the ``hf`` engine ignores them."""

    backend: str = "hf"  # hf | vllm
    gpu_memory_utilization: float = 0.5  # vLLM: share of GPU memory for its weights and KV cache (the trainer needs the rest)
    tensor_parallel_size: int = 1  # vLLM: GPUs per engine; colocated engines are one per rank (1)
    max_model_len: int = 0  # vLLM: longest prompt + completion, in tokens; 0 = the model's maximum (sizes the KV cache)
    max_num_seqs: int = 256  # vLLM: sequences decoded together at most
    dtype: str = "auto"  # vLLM: auto (the policy's dtype) | float32 | bfloat16 | float16
    enforce_eager: bool = False  # vLLM: no CUDA graphs (faster start, slower decode); always on for a CPU
    enable_sleep_mode: bool = False  # vLLM, CUDA only: free the engine's memory during the update, take it back to sample
    enable_prefix_caching: bool = True  # vLLM: reuse the KV cache of shared prompt prefixes (reset after each weight push)
    kv_cache_gb: float = 0.0  # vLLM on a CPU: KV cache size in GiB; 0 = vLLM's default
    weight_sync_timeout_s: float = 600.0  # a weight push taking longer stops the run, naming the rank; 0 = no limit
    # --- where GRPO's rollouts run (r1lab.rollout.remote, r1lab.rollout.rounds) ---
    placement: str = "colocated"  # colocated: the engine in the trainer's process | separate: rollout workers in their own processes
    num_workers: int = 1  # separate, embedded: workers per trainer rank, started and stopped by r1lab
    servers: list[str] = field(default_factory=list)  # separate: host:port of workers started elsewhere (r1lab-rollout-worker); a multiple of the ranks
    max_staleness: int = 0  # separate: rounds sampled ahead = the most policy versions a consumed batch may lag (0: on-policy, 1: one-step-off)
    worker_threads: int = 1  # separate, embedded, CPU: torch threads per worker process; 0 = torch's default
    worker_timeout_s: float = 120.0  # separate: a worker silent this long (no reply, no heartbeat) stops the run, naming it; 0 = wait forever
    restart_workers: bool = False  # separate, embedded: start a worker that died again (current weights, its requests resent) instead of stopping


@dataclass
class CacheConfig:
    """The stage cache (``r1lab.stage_cache``): a stage whose config, inputs and code match one
    built before is reused (its files hard-linked into the run) instead of built again, so a
    sweep's arms that share a cold start train it once. Logged as ``cache hit`` / ``cache miss``."""

    enabled: bool = True  # false: every stage is built
    # where the entries live; null = <sweep dir>/.stage_cache in a multirun (`r1lab -m`: the arms of
    # one sweep share it) and no cache in a single run (name a folder, e.g. outputs/.stage_cache, to have one)
    dir: Optional[str] = None


@dataclass
class StageConfig:
    """Fields every stage has.

    A subclass that sets ``kind`` (``kind: str = "sft"``) is the schema of that stage kind, declared
    in the kind's own module and registered with its run function (``r1lab.stages.registry.
    register_stage``). One that does not (``SampledPromptsConfig``) only shares fields. A kind's
    own checks go in ``check``."""

    kind: str = MISSING  # sft | grpo | rejection | dpo
    model: Optional[str] = None  # start from this model (path, hub id, or "base": the run's starting model) instead of the previous stage's
    seed: int = 0
    lr: float = 1e-5  # peak learning rate
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0  # fraction of the optimizer steps spent warming up linearly
    schedule: str = "cosine"  # cosine | linear | constant (after warmup)
    min_lr_ratio: float = 0.0  # final lr as a fraction of the peak
    max_grad_norm: float = 1.0  # gradient clipping; 0 = off
    micro_batch_per_device: int = 8  # sequences per forward/backward on one process
    save_every: int = 0  # optimizer steps between resumable checkpoints; 0 = only at the end
    keep_checkpoints: int = 2  # resumable checkpoints kept (the newest)

    def check(self, name: str) -> None:
        """The kind's own start-up checks of the typed config of stage ``name`` (``r1lab.validate``
        runs the ones every stage shares); a ``ValueError`` names the field and the fix."""


@dataclass
class ReadabilityConfig:
    """Which readability filters (``r1lab.stages.filters.FILTERS``, each switched by the flag of its
    name) a kept (rejection) or chosen (DPO) completion must pass."""

    well_formed: bool = True  # R1's strict <think>X</think><answer>Y</answer> (format reward == 1)
    language: bool = True  # language consistency of the reasoning >= min_language_consistency
    min_language_consistency: float = 0.95  # share of reasoning words in the target language, in [0, 1]
    language_reward: str = "language"  # registered reward measuring it: language (en) | language_zh
    no_code_fences: bool = True  # reject reasoning that contains a ``` fence (False = fences allowed)
    length: bool = True  # keep min_tokens <= response tokens <= max_tokens
    min_tokens: int = 1  # shortest kept response, in generated tokens
    max_tokens: int = 0  # longest kept response, in generated tokens; 0 = no limit
    repetition: bool = True  # reject degenerate loops: repeated word n-grams above the threshold
    repetition_ngram: int = 4  # n of the whitespace-separated word n-grams
    max_repeated_fraction: float = 0.5  # share of the n-grams that repeat an earlier one, in [0, 1]
    true_claims: bool = True  # reject reasoning with a false arithmetic claim ("6-1=7": r1lab.rewards.claims)


@dataclass
class SampledPromptsConfig(StageConfig):
    """Stages that sample k completions per prompt from the current model and judge them."""

    source: str = "train_tail"  # train_tail (last train rows no earlier GRPO stage of the run drew) | path to a problems file
    num_prompts: int = 256  # prompts sampled (fewer if the source has fewer)
    samples_per_prompt: int = 8  # k completions per prompt
    max_new_tokens: int = 256  # longest completion, in tokens
    temperature: float = 1.0
    top_p: float = 1.0
    generation_batch_size: int = 256  # sequences generated together on one process
    readability: ReadabilityConfig = field(default_factory=ReadabilityConfig)  # what a kept / chosen completion must pass
    tools: ToolsConfig = field(default_factory=ToolsConfig)  # tools the sampled completions may call


@dataclass
class RunConfig:
    """The root config: one pipeline run."""

    name: str = MISSING  # recipe name; run directory is outputs/<name>/<timestamp>/
    seed: int = 0
    resume: Optional[str] = None  # a run directory to resume: finished stages are skipped
    run_dir: Optional[str] = None  # where to write; default: Hydra's output directory
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    stages: dict[str, Any] = field(default_factory=dict)  # stage name -> stage config, in order
