"""Loading and saving generators: one entry point for every place a pix2pix generator comes from.

``load_generator(source)`` takes
- a Lightning ``.ckpt`` written by ``p2p-train`` (the architecture comes from its hyperparameters);
- a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``);
- a state dict file (``.pth``/``.pt``/``.bin``/``.safetensors``) in p2p's layout or the reference
  pix2pix PyTorch layout (the official ``latest_net_G.pth`` files); the architecture is read off its keys;
- an ``http(s)://`` URL, downloaded once into ``$P2P_CACHE/models`` (default ``~/.cache/p2p``);
- ``hf-hub:owner/name[@revision]``, a repository written by ``push_to_hub``;
- a zoo tag (``p2p.list_models(pretrained=True)``), whose entry says the architecture and URL.

Security: a torch file is read with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers; a file that needs arbitrary unpickling (it could run code) is refused unless the caller passes
``allow_pickle=True``. Downloads are checked against the sha256 of their zoo entry when it has one;
otherwise the hash of the first download is pinned next to the file and later downloads must match it.

Saving: the generators inherit ``GeneratorHubMixin`` (huggingface_hub's ``PyTorchModelHubMixin``), so
``G.save_pretrained(folder)`` writes ``config.json`` (registry name + constructor arguments) and
``model.safetensors``, and ``G.push_to_hub("owner/name")`` uploads the same two files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from huggingface_hub import PyTorchModelHubMixin

log = logging.getLogger(__name__)

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
HF_PREFIX = "hf-hub:"
# keys of config.json that describe the model rather than build it (kept when it is saved again)
METADATA_KEYS = (
    "p2p_version",
    "task",
    "dataset",
    "direction",
    "input_size",
    "preprocess",
    "inference",
    "source",
)


class GeneratorHubMixin(
    PyTorchModelHubMixin,
    library_name="p2p",
    tags=["pix2pix", "image-to-image"],
    pipeline_tag="image-to-image",
    paper_url="https://arxiv.org/abs/1611.07004",
    license="bsd-3-clause",
):
    """huggingface_hub's mixin, plus the registry name in ``config.json`` so ``load_generator`` rebuilds the
    network through ``p2p.create_model``. The mixin records the constructor arguments at construction, which
    for p2p's generators are plain numbers and strings; ``Cls.from_pretrained(folder)`` works as well."""

    def save_pretrained(self, save_directory: str | Path, *, config: Any = None, **kwargs: Any) -> Any:
        full = {**generator_config(self), **(config or {})}
        return super().save_pretrained(save_directory, config=full, **kwargs)  # type: ignore[misc]


def generator_config(model: Any) -> dict[str, Any]:
    """Registry name + every constructor argument (so the builder's own defaults never matter)."""
    from p2p import __version__
    from p2p.models import ResnetGenerator, UNetGenerator

    captured = dict(getattr(model, "_hub_mixin_config", None) or {})
    if "name" not in captured:
        if isinstance(model, UNetGenerator):
            captured["name"] = "unet_256" if model.skip else "encoder_decoder_256"
        elif isinstance(model, ResnetGenerator):
            captured["name"] = "resnet_9blocks"
        else:
            raise TypeError(f"cannot describe a {type(model).__name__} for config.json: not a p2p generator")
    captured["p2p_version"] = __version__
    return captured


# --- reading files -----------------------------------------------------------------------------------------
def _torch_load(path: Path, allow_pickle: bool) -> Any:
    """``weights_only`` first; full unpickling only with the caller's consent (it can execute code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError, or whatever a non-torch file raises
        if not allow_pickle:
            raise ValueError(
                f"{path}: cannot be read as plain tensors ({type(e).__name__}: {str(e).splitlines()[0]}). "
                "It needs full unpickling, which can run arbitrary code: pass allow_pickle=True "
                "(p2p-translate/p2p-export --allow-pickle) only if you trust the file"
            ) from None
        log.warning("%s: unpickling with weights_only=False (allow_pickle=True)", path)
        return torch.load(path, map_location="cpu", weights_only=False)


def _lightning_arch(hp: dict[str, Any]) -> dict[str, Any]:
    """The generator of a ``Pix2Pix`` checkpoint, from its saved hyperparameters (see p2p.module)."""
    gen = {k: v for k, v in (hp.get("generator") or {"name": "unet_256"}).items() if v is not None}
    arch = {"in_channels": hp.get("in_channels", 3), "out_channels": hp.get("out_channels", 3), **gen}
    if hp.get("val_inference"):
        arch["inference"] = hp["val_inference"]  # the mode its validation metrics were measured in
    return arch


def infer_arch(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Read a generator's architecture off a state dict (p2p or reference layout, U-Net or ResNet).

    Not recoverable from weights: the dropout rate of a U-Net (dropout has no parameters; 0.5 as in the
    paper) and ``instance`` vs ``none`` normalisation (neither has parameters; ``instance`` is assumed, the
    reference's alternative to BatchNorm). Pass ``arch=`` to ``load_generator`` to say otherwise.
    """
    from p2p.checkpoint import _unet_key_map, is_reference_unet

    state = {k.removeprefix("module."): v for k, v in state.items()}
    norm = "batch" if any(k.endswith("running_mean") for k in state) else "instance"
    modules = {k.rpartition(".")[0] for k in state}
    if is_reference_unet(state):
        for n in range(2, 17):
            mapping = _unet_key_map(n)
            inv = {v: k for k, v in mapping.items()}
            if modules <= set(mapping) and f"{inv[f'down.{n - 1}.conv']}.weight" in state:
                first, last = state[f"{inv['down.0.conv']}.weight"], state[f"{inv['up.0.conv']}.weight"]
                return {
                    "name": "unet_256",  # the reference U-Net always has skips
                    "num_downs": n,
                    "ngf": first.shape[0],
                    "in_channels": first.shape[1],
                    "out_channels": last.shape[1],  # a transposed conv's weight is [in, out, k, k]
                    "norm": norm,
                    "skip": True,
                }
        raise ValueError("keys look like a reference U-Net but match no depth from 2 to 16 levels")
    if "down.0.conv.weight" in state:  # p2p U-Net
        n = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"down\.(\d+)\.", k)))
        first, last = state["down.0.conv.weight"], state["up.0.conv.weight"]
        skip = n > 2 and state["up.1.conv.weight"].shape[0] == 2 * state["down.1.conv.weight"].shape[0]
        return {
            "name": "unet_256" if skip else "encoder_decoder_256",
            "num_downs": n,
            "ngf": first.shape[0],
            "in_channels": first.shape[1],
            "out_channels": last.shape[1],
            "norm": norm,
            "skip": skip,
        }
    if "model.1.weight" in state and any(".conv_block." in k for k in state):  # ResNet (both layouts)
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
        convs = [int(m.group(1)) for k in state if (m := re.fullmatch(r"model\.(\d+)\.weight", k))]
        first, last = state["model.1.weight"], state[f"model.{max(convs)}.weight"]
        # with dropout the block is [pad, conv, norm, relu, dropout, pad, conv, norm]: its 2nd conv moves to 6
        drop = any(k.endswith("conv_block.6.weight") and v.ndim == 4 for k, v in state.items())
        return {
            "name": "resnet_9blocks",
            "n_blocks": len(blocks),
            "ngf": first.shape[0],
            "in_channels": first.shape[1],
            "out_channels": last.shape[0],
            "norm": norm,
            "dropout": 0.5 if drop else 0.0,
        }
    raise ValueError(f"not a p2p or reference pix2pix generator; first keys: {', '.join(list(state)[:5])}")


def build_generator(arch: dict[str, Any], state: dict[str, torch.Tensor], where: str) -> nn.Module:
    """``create_model(arch)`` and load ``state`` strictly (reference keys converted), naming ``where``."""
    from p2p.checkpoint import reference_to_p2p
    from p2p.registry import _valid_overrides, create_model

    arch = dict(arch)
    if "name" not in arch:
        raise KeyError(f"{where}: the architecture has no 'name' (one of p2p.list_models(kind='generator'))")
    name = arch.pop("name")
    overrides = {k: v for k, v in arch.items() if k in _valid_overrides(name)}
    model = create_model(name, **overrides)
    state = reference_to_p2p(state, model)
    # files from PyTorch < 0.4.1 (like some official pix2pix models) have no BatchNorm step counters
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RuntimeError(f"{where}: weights do not fit {name}({overrides}): {e}") from None
    return model


def _state_dict_of(obj: Any, where: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{where}: expected a state dict of tensors, found {type(obj).__name__}")
    return obj


def _load_file(
    path: Path, arch: dict[str, Any] | None, allow_pickle: bool
) -> tuple[nn.Module, dict[str, Any]]:
    where = str(path)
    if path.is_dir():
        cfg_path = path / CONFIG_NAME
        if not cfg_path.is_file() or not (path / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(
                f"{path}: a save_pretrained folder needs {CONFIG_NAME} and {WEIGHTS_NAME}"
            )
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{cfg_path}: invalid JSON: {e}") from None
        from safetensors.torch import load_file

        config = {**config, **(arch or {})}
        return build_generator(config, load_file(str(path / WEIGHTS_NAME)), where), config
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
        sidecar = path.with_name(CONFIG_NAME)  # a weights file next to its config.json
        base = json.loads(sidecar.read_text()) if sidecar.is_file() else infer_arch(state)
        config = {**base, **(arch or {})}
        return build_generator(config, state, where), config
    obj = _torch_load(path, allow_pickle)
    if isinstance(obj, dict) and "hyper_parameters" in obj and "state_dict" in obj:  # a Lightning checkpoint
        config = {**_lightning_arch(obj["hyper_parameters"]), **(arch or {})}
        state = {k[2:]: v for k, v in obj["state_dict"].items() if k.startswith("G.")}
        if not state:
            raise KeyError(f"{path}: a Lightning checkpoint without generator weights (no 'G.' keys)")
        return build_generator(config, state, where), config
    if isinstance(obj, nn.Module) and arch is None:  # a whole pickled model (allow_pickle was given)
        return obj, {"name": type(obj).__name__}
    state = _state_dict_of(obj, where)
    if state and all(k.startswith(("netG.", "netD.")) for k in state):  # a bundle of networks
        state = {k[5:]: v for k, v in state.items() if k.startswith("netG.")}
    try:
        inferred = infer_arch(state)
    except ValueError as e:
        if not arch or "name" not in arch:
            raise ValueError(f"{path}: {e}; pass arch={{'name': ..., ...}} to say the architecture") from None
        inferred = {}
    config = {**inferred, **(arch or {})}
    return build_generator(config, state, where), config


# --- remote sources --------------------------------------------------------------------------------------
def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where downloads go: ``cache_dir``, else ``$P2P_CACHE``, else ``~/.cache/p2p`` (as the datasets)."""
    return Path(cache_dir or os.environ.get("P2P_CACHE") or Path.home() / ".cache" / "p2p").expanduser()


def sha256sum(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(
    url: str, sha256: str | None = None, cache_dir: str | Path | None = None, timeout: float = 60.0
) -> Path:
    """Download ``url`` once into the cache and return the file; check its sha256 (given, or pinned on first
    download in ``<file>.sha256``: trust on first use). A mismatch deletes the file and raises."""
    parsed = urllib.parse.urlparse(url)
    name = Path(parsed.path).name or "download"
    folder = cache_root(cache_dir) / "models" / hashlib.sha256(url.encode()).hexdigest()[:16]
    dest, pin = folder / name, folder / f"{name}.sha256"
    if not dest.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
        tmp = Path(tmp_name)
        log.info("downloading %s", url)
        try:
            with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
            os.replace(tmp, dest)  # atomic: an interrupted download never looks complete
        except OSError as e:
            raise OSError(f"could not download {url}: {e}") from None
        finally:
            tmp.unlink(missing_ok=True)
    expected = sha256 or (pin.read_text().strip() if pin.is_file() else None)
    actual = sha256sum(dest)
    if expected is None:
        pin.write_text(actual + "\n")
        log.info("%s: sha256 %s pinned in %s", name, actual, pin)
    elif actual != expected:
        dest.unlink()
        raise RuntimeError(
            f"{url}: downloaded file has sha256 {actual} but {expected} was expected "
            f"({'from the caller/zoo' if sha256 else f'pinned in {pin}'}); the file was deleted"
        )
    return dest


def _hf_hub(repo: str, cache_dir: str | Path | None) -> Path:
    """Fetch ``config.json`` and ``model.safetensors`` of ``owner/name[@revision]``; returns their folder."""
    import huggingface_hub

    repo_id, _, revision = repo.partition("@")
    files = [
        huggingface_hub.hf_hub_download(repo_id, f, revision=revision or None, cache_dir=cache_dir)
        for f in (CONFIG_NAME, WEIGHTS_NAME)
    ]
    return Path(files[0]).parent


def load_generator_and_config(
    source: str | Path,
    *,
    arch: dict[str, Any] | None = None,
    allow_pickle: bool = False,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    sha256: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """``load_generator`` that also returns the config: ``name`` + constructor arguments, and what is known
    about the model (zoo metadata, the inference mode of a checkpoint's validation)."""
    from p2p import zoo

    text = str(source)
    if Path(text).expanduser().exists():
        model, config = _load_file(Path(text).expanduser(), arch, allow_pickle)
    elif text.startswith(HF_PREFIX):
        model, config = _load_file(_hf_hub(text[len(HF_PREFIX) :], cache_dir), arch, allow_pickle)
    elif text.startswith(("http://", "https://")):
        model, config = _load_file(download(text, sha256, cache_dir), arch, allow_pickle)
    elif text in zoo.PRETRAINED:
        entry = zoo.PRETRAINED[text]
        path = download(entry.url, sha256 or entry.sha256, cache_dir)
        model, config = _load_file(path, {**entry.metadata(), **entry.arch, **(arch or {})}, allow_pickle)
    else:
        raise FileNotFoundError(
            f"{text!r} is not a file, a folder, an http(s) URL, an {HF_PREFIX}owner/name id or a zoo tag "
            f"(zoo: {', '.join(zoo.list_pretrained())})"
        )
    model.eval()
    # what save_pretrained writes again: the constructor arguments plus the known metadata
    if isinstance(model, GeneratorHubMixin):
        keep = {k: v for k, v in config.items() if k in METADATA_KEYS or k == "name"}
        model._hub_mixin_config = {**dict(model._hub_mixin_config or {}), **keep}  # type: ignore[arg-type]
    return model.to(device), config


def load_generator(
    source: str | Path,
    *,
    arch: dict[str, Any] | None = None,
    allow_pickle: bool = False,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    sha256: str | None = None,
) -> nn.Module:
    """A ready generator (eval mode, on ``device``) from a checkpoint, folder, file, URL, hub id or zoo tag.

    ``arch`` overrides or completes the architecture (``{"name": "unet_256", "norm": "instance"}``);
    ``allow_pickle`` permits full unpickling of files that are not plain tensors (only for trusted files);
    ``sha256`` checks a download. See the module docstring for the accepted sources.
    """
    return load_generator_and_config(
        source, arch=arch, allow_pickle=allow_pickle, device=device, cache_dir=cache_dir, sha256=sha256
    )[0]
