"""One reader for every file p2p takes weights from, for the generator (``G``) or the discriminator (``D``).

- a ``save_pretrained`` folder: ``config.json`` (registry name + constructor arguments) + ``model.safetensors``;
- a ``.safetensors`` file, with the ``config.json`` beside it when there is one;
- a Lightning ``.ckpt`` written by ``p2p-train``: ``G.*`` / ``D.*`` weights, the architecture in its
  ``p2p`` entry (older checkpoints: in its hyperparameters);
- a torch state dict (``.pth``/``.pt``/``.bin``) in p2p's layout or the reference pix2pix layout (the official
  ``latest_net_G.pth`` files), bare or under ``state_dict``; a bundle of ``netG.*``/``netD.*`` networks.

Security: torch files are read with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers. A well-formed file that needs full unpickling (it could run code) is refused unless the caller
passes ``allow_pickle=True``; then it may also hold a whole pickled module.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import pickletools
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file

from p2p.errors import CheckpointError, CheckpointNotFoundError, check_value
from p2p.models import model_spec
from p2p.models.hub import CONFIG_NAME, WEIGHTS_NAME

log = logging.getLogger(__name__)

Network = Literal["G", "D"]
# key prefixes of each network in files that hold several: p2p-train's checkpoints, bundles (netG./netD.)
_PREFIXES = {"G": ("G.", "netG."), "D": ("D.", "netD.")}


@dataclass
class Weights:
    """One network's weights and what the file says about it."""

    state: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)  # registry name + constructor args, metadata
    module: nn.Module | None = None  # a whole pickled module (only with allow_pickle)
    checkpoint: dict[str, Any] | None = None  # the whole Lightning checkpoint, when it is one


def read_weights(path: str | Path, network: str = "G", allow_pickle: bool = False) -> Weights:
    """The weights of ``network`` (``G`` or ``D``) in ``path``; `CheckpointError` names the file and what
    is wrong with it."""
    check_value("network", network, Network)
    path = Path(path).expanduser()
    if path.is_dir():
        return _read_folder(path, network)
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path}: no such file or folder")
    if path.suffix == ".safetensors":
        state = _safetensors(path)
        sidecar = path.with_name(CONFIG_NAME)  # a weights file next to its config.json
        config = _json(sidecar) if sidecar.is_file() else {}
        return Weights(_select(state, network, path), config)
    obj = _torch_load(path, allow_pickle)
    if isinstance(obj, nn.Module):
        return Weights(obj.state_dict(), {}, module=obj)
    if isinstance(obj, dict) and "hyper_parameters" in obj and "state_dict" in obj:
        return _read_lightning(obj, network, path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors, found {type(obj).__name__}")
    return Weights(_select(obj, network, path))


def _read_folder(path: Path, network: str) -> Weights:
    config_path, weights_path = path / CONFIG_NAME, path / WEIGHTS_NAME
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointNotFoundError(
            f"{path}: a save_pretrained folder needs {CONFIG_NAME} and {WEIGHTS_NAME}"
        )
    if network != "G":
        raise CheckpointError(f"{path}: a save_pretrained folder holds a generator only")
    return Weights(_safetensors(weights_path), _json(config_path))


def _read_lightning(ckpt: dict[str, Any], network: str, path: Path) -> Weights:
    prefix = f"{network}."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if not state:
        what = "generator" if network == "G" else "discriminator"
        raise CheckpointError(f"{path}: a Lightning checkpoint without {what} weights (no {prefix!r} keys)")
    config: dict[str, Any] = {}
    if network == "G":
        saved = ckpt.get("p2p") or {}
        config = dict(saved.get("generator") or lightning_arch(ckpt["hyper_parameters"]))
        if ckpt["hyper_parameters"].get("val_inference"):
            config["inference"] = ckpt["hyper_parameters"]["val_inference"]  # what its val metrics used
    return Weights(state, config, checkpoint=ckpt)


def lightning_arch(hp: dict[str, Any]) -> dict[str, Any]:
    """The generator of a checkpoint written before p2p stored it whole, from its hyperparameters."""
    name, overrides = model_spec(hp.get("generator"), "unet_256")
    return {
        "name": name,
        "in_channels": hp.get("in_channels", 3),
        "out_channels": hp.get("out_channels", 3),
        **overrides,
    }


def _select(state: dict[str, torch.Tensor], network: str, path: Path) -> dict[str, torch.Tensor]:
    """This network's part of a file that holds several (its keys all carry a network prefix)."""
    known = (*(p for prefixes in _PREFIXES.values() for p in prefixes), "input.", "output.")
    if not state or not all(k.startswith(known) for k in state):
        return state  # one network
    for prefix in _PREFIXES[network]:
        part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if part:
            return part
    raise CheckpointError(f"{path}: no keys start with {' or '.join(map(repr, _PREFIXES[network]))}")


def _safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def _json(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(config).__name__}")
    return config


# what the weights-only unpickler raises when it meets an object it will not rebuild; anything else it
# raises ("Unsupported operand 225", "String is too long", ...) means the bytes are not a pickle
_REFUSALS = (
    "Unsupported global",
    "is blocked",
    "Can only create new object",
    "Can only build",
    "Trying to call reduce",
    "must be imported to load",
)
# what torch.load raises on a file cut short, random bytes or text (found by fuzzing torch 2.x)
_CORRUPT = (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, struct.error, AssertionError)
# a legacy (non-zip) torch file: pickles of the magic number, protocol, system info, the object, its
# storage keys; then the tensors' bytes
_LEGACY_PICKLES = 5


def _torch_load(path: Path, allow_pickle: bool) -> Any:
    """``weights_only`` first; full unpickling only with the caller's consent (it can execute code). Only a
    well-formed file is told to ask for it: a corrupt one is called corrupt."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not any(r in str(e) for r in _REFUSALS):
            raise _corrupt(path, e) from None
        # a file cut short inside a class name reads as a refused global ("GLOBAL collections.Or"), and
        # random bytes can too: the stream must also parse to the end (and a legacy file's tensors be whole)
        if not _pickles_parse(path):
            raise _corrupt(path, "its pickles or its tensors' bytes are cut short or damaged") from None
        if not allow_pickle:
            raise CheckpointError(
                f"{path}: a well-formed torch file that needs full unpickling, which can run arbitrary code "
                f"({_unsupported_global(str(e))}): pass allow_pickle=True (p2p-translate/p2p-export "
                "--allow-pickle) only if you trust the file"
            ) from None
    except _CORRUPT as e:
        raise _corrupt(path, e) from None
    log.warning("%s: unpickling with weights_only=False (allow_pickle=True)", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, *_CORRUPT) as e:  # its tensor data cut short, ...
        raise _corrupt(path, e) from None


def _corrupt(path: Path, error: Exception | str) -> CheckpointError:
    """The "not a checkpoint" error with torch's reason: of a weights-only message only the unpickler's own
    words ("Unsupported operand 225"), as the rest says that weights_only=False "will likely succeed"."""
    if isinstance(error, Exception):
        text = str(error).rpartition("WeightsUnpickler error:")[2].strip()
        error = f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
    return CheckpointError(f"{path}: not a checkpoint (truncated, corrupt, or not a torch file): {error}")


def _pickles_parse(path: Path) -> bool:
    """Whether the file's pickles parse to their end, read by `pickletools` (which runs nothing): the
    ``data.pkl`` of a zip-format torch file, the leading pickles of a legacy one."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.rpartition("/")[2] == "data.pkl"]
                return len(names) == 1 and _parse(io.BytesIO(archive.read(names[0])), 1)
        with path.open("rb") as f:  # the pickles come before the tensors' bytes
            return _parse(f, _LEGACY_PICKLES) and _legacy_tensors_complete(path)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):  # pickletools: "opcode unknown", cut short
        return False


# bytes per element of the storage classes a legacy file names (UntypedStorage counts bytes)
_ELEMENT_SIZES = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1,
                  "Byte": 1, "Bool": 1, "ComplexDouble": 16, "ComplexFloat": 8, "Untyped": 1}  # fmt: skip


class _Inert:
    """Stands in for every class and function a pickle names, and takes any arguments and state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _StorageLister(pickle.Unpickler):
    """Reads a legacy file's pickles without importing or running anything: every global is `_Inert` (a
    storage class is its name), and each tensor storage's persistent id is recorded as (key, name, numel)."""

    def __init__(self, f: IO[bytes]) -> None:
        super().__init__(f)
        self.storages: dict[str, tuple[str, int]] = {}

    def find_class(self, module: str, name: str) -> Any:
        return name if module == "torch" and name.endswith("Storage") else type(name, (_Inert,), {})

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], str):
            self.storages[str(pid[2])] = (pid[1].removesuffix("Storage"), int(pid[4]))
        if isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "module":  # a pickled module's class
            return pid[1]  # (with its source code, which torch only compares)
        return _Inert()


def _legacy_tensors_complete(path: Path) -> bool:
    """Whether a legacy file holds all its tensors' bytes: after the pickles, each storage (in the order of
    the last pickle's key list) is its element count (8 bytes) and that many elements. A file these
    pickles cannot be walked through is not called incomplete."""
    with path.open("rb") as f:
        lister = _StorageLister(f)
        try:
            for _ in range(_LEGACY_PICKLES - 1):
                lister.load()
            keys = lister.load()  # a list of strings (read inertly too: the file is not trusted)
            sizes = [(lister.storages[key][1], _ELEMENT_SIZES[lister.storages[key][0]]) for key in keys]
        except (pickle.UnpicklingError, TypeError, AttributeError, *_CORRUPT):
            return True
        for numel, size in sizes:
            if f.read(8) != struct.pack("<q", numel):
                return False
            f.seek(numel * size, io.SEEK_CUR)
        return f.tell() <= path.stat().st_size


def _parse(stream: IO[bytes], count: int) -> bool:
    """Whether ``count`` pickles follow one another in ``stream``, each ending in STOP."""
    for _ in range(count):
        ops = list(pickletools.genops(stream))  # stops after STOP, where the next pickle starts
        if not ops or ops[-1][0].name != "STOP":
            return False
    return True


def _unsupported_global(message: str) -> str:
    """The class the weights-only unpickler refused, as torch names it, or a general phrase."""
    for line in message.splitlines():
        if "Unsupported global" in line:
            return line.strip().rstrip(".")
    return "it holds objects other than tensors"
