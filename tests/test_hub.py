"""load_generator from every kind of source, save_pretrained/push_to_hub, and the pretrained zoo."""

from __future__ import annotations

import io
import json
import pickle
import pickletools
from pathlib import Path

import pytest
import torch
from PIL import Image

import p2p
from inference_helpers import randomise_batchnorm, serve, smoke_checkpoint, to_reference_layout
from p2p.errors import DownloadError
from p2p.inference import size_divisor
from p2p.models import ResnetGenerator, UNetGenerator, zoo
from p2p.models.hub import generator_config
from p2p.training import Pix2Pix


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smoke_checkpoint(tmp_path_factory)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2P_CACHE", str(tmp_path / "cache"))  # never the user's cache


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, shape: tuple[int, ...] | None = None) -> bool:
    """Equal outputs in eval mode; the default input is 2 images of 1x2 times the size the net needs."""
    d = size_divisor(a)
    x = torch.rand(shape or (2, 3, d, 2 * d), generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_lightning_checkpoint_gives_the_trained_generator(ckpt: Path) -> None:
    G = p2p.load_generator(ckpt)
    config = generator_config(G)
    trained = torch.load(ckpt, weights_only=True)["p2p"]["generator"]  # debug=smoke's U-Net, every argument
    assert isinstance(G, UNetGenerator) and not G.training
    assert (G.num_downs, config["ngf"], config["inference"]) == (trained["num_downs"], 8, "eval")
    assert same_outputs(G, Pix2Pix.load_from_checkpoint(ckpt, map_location="cpu").G)


def test_save_pretrained_then_load_generator_gives_identical_outputs(ckpt: Path, tmp_path: Path) -> None:
    G = p2p.load_generator(ckpt)
    G.save_pretrained(tmp_path / "g")
    config = json.loads((tmp_path / "g" / "config.json").read_text())
    # the generic builder with every argument recorded (num_downs=7 makes it the unet_128 it was trained as)
    assert config["name"] == "unet_256" and config["num_downs"] == G.num_downs == 7 and config["ngf"] == 8
    assert (tmp_path / "g" / "model.safetensors").is_file()
    loaded = p2p.load_generator(tmp_path / "g")
    assert same_outputs(G, loaded)
    assert same_outputs(G, UNetGenerator.from_pretrained(tmp_path / "g"))  # huggingface_hub's own loader
    # and through the image API, on a size the network cannot take directly
    img = Image.effect_noise((300, 200), 64).convert("RGB")
    a, b = p2p.Translator(G, device="cpu")(img), p2p.Translator(tmp_path / "g", device="cpu")(img)
    assert a.size == (300, 200) and a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("encoder_decoder_128", {"num_downs": 5, "ngf": 4, "in_channels": 1}),
        ("resnet_6blocks", {"ngf": 4, "n_blocks": 2, "norm": "instance", "out_channels": 1}),
    ],
)
def test_other_generators_round_trip(name: str, kw: dict, tmp_path: Path) -> None:
    G = randomise_batchnorm(p2p.create_model(name, **kw))
    G.save_pretrained(tmp_path / "g")
    loaded = p2p.load_generator(tmp_path / "g")
    assert type(loaded) is type(G)
    assert same_outputs(G, loaded, (1, kw.get("in_channels", 3), 32, 64))


def test_reference_pth_architecture_is_read_off_its_keys(tmp_path: Path) -> None:
    """An official-style latest_net_G.pth: reference key layout, no config, no BatchNorm step counters."""
    src = randomise_batchnorm(p2p.create_model("unet_256", num_downs=6, ngf=8, in_channels=1))
    torch.save(to_reference_layout(src.state_dict(), 6), tmp_path / "latest_net_G.pth")
    G = p2p.load_generator(tmp_path / "latest_net_G.pth")
    config = generator_config(G)
    assert {k: config[k] for k in ("num_downs", "ngf", "in_channels", "out_channels", "norm")} == {
        "num_downs": 6,
        "ngf": 8,
        "in_channels": 1,
        "out_channels": 3,
        "norm": "batch",
    }
    assert same_outputs(src, G, (1, 1, 64, 64))


def test_resnet_state_dict_architecture_including_dropout(tmp_path: Path) -> None:
    src = randomise_batchnorm(ResnetGenerator(ngf=4, n_blocks=3, dropout=0.5))
    torch.save(src.state_dict(), tmp_path / "net_G.pth")
    G = p2p.load_generator(tmp_path / "net_G.pth")
    config = generator_config(G)
    assert (config["n_blocks"], config["dropout"], config["norm"]) == (3, 0.5, "batch")
    assert same_outputs(src, G, (1, 3, 32, 32))


def test_untrusted_pickle_is_refused_unless_allowed(tmp_path: Path) -> None:
    src = p2p.create_model("unet_128", num_downs=5, ngf=4)
    torch.save(src, tmp_path / "whole_model.pt")  # a pickled module: loading it can run code
    with pytest.raises(ValueError, match=r"whole_model\.pt.*allow_pickle=True"):
        p2p.load_generator(tmp_path / "whole_model.pt")
    assert same_outputs(
        src, p2p.load_generator(tmp_path / "whole_model.pt", allow_pickle=True), (1, 3, 32, 32)
    )


class _WritesAFile:
    """Unpickled, it calls `Path.touch` on its path: a stand-in for a payload."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.path,))


def test_reading_an_untrusted_legacy_file_runs_none_of_it(tmp_path: Path) -> None:
    """A legacy torch file whose last pickle (where the tensors' keys belong) calls a function: checking
    whether its tensors are whole (to call it corrupt or well-formed) must not unpickle it for real."""
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buffer, _use_new_zipfile_serialization=False)
    stream = io.BytesIO(buffer.getvalue())
    for _ in range(4):  # magic number, protocol, system info, the object
        list(pickletools.genops(stream))
    marker = tmp_path / "ran"
    payload = buffer.getvalue()[: stream.tell()] + pickle.dumps(_WritesAFile(marker), protocol=2)
    (tmp_path / "evil.pth").write_bytes(payload)
    with pytest.raises(ValueError, match=r"evil\.pth"):
        p2p.load_generator(tmp_path / "evil.pth")
    assert not marker.exists()


def test_bad_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"not_a_model.*pretrained model name.*unet_256.facades_label2photo"
    ):
        p2p.load_generator("not_a_model")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match=r"odd\.pth: not a p2p or reference pix2pix generator"):
        p2p.load_generator(tmp_path / "odd.pth")
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileNotFoundError, match=r"needs config\.json"):
        p2p.load_generator(tmp_path / "folder")


def test_list_models_pretrained_has_the_official_models() -> None:
    names = p2p.list_models(pretrained=True)
    tags = {"facades_label2photo", "sat2map", "map2sat", "edges2shoes", "day2night"}
    assert {f"unet_256.{t}" for t in tags} <= set(names)  # timm-style arch.tag
    assert p2p.list_models("*2photo", pretrained=True) == ["unet_256.facades_label2photo"]
    assert p2p.list_models(kind="discriminator", pretrained=True) == []
    info = zoo.pretrained_info("facades_label2photo")
    assert info["dataset"] == "facades" and info["direction"] == "BtoA" and info["input_size"] == 256
    assert info["url"] == "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/facades_label2photo.pth"
    assert {"task", "preprocess", "source", "licence", "sha256", "inference"} <= set(info)
    # the entry builds the reference's U-Net-256: the paper's 54,413,955 parameters
    G = p2p.create_model(**info["arch"])
    assert sum(p.numel() for p in G.parameters()) == 54_413_955


def tiny_entry(sha256: str | None) -> zoo.Pretrained:
    arch = {
        "name": "unet_256",
        "num_downs": 6,
        "ngf": 8,
        "norm": "batch",
        "in_channels": 3,
        "out_channels": 3,
    }
    return zoo.Pretrained(
        "tiny_label2photo", "labels -> photo", "facades", "BtoA", "tiny.pth", arch, 64, sha256=sha256
    )


def test_zoo_tag_downloads_once_from_the_zoo_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = randomise_batchnorm(p2p.create_model("unet_256", num_downs=6, ngf=8))
    served = tmp_path / "server"
    served.mkdir()
    torch.save(to_reference_layout(src.state_dict(), 6), served / "tiny.pth")
    from p2p.io import sha256sum

    monkeypatch.setitem(zoo.PRETRAINED, "tiny_label2photo", tiny_entry(sha256sum(served / "tiny.pth")))
    with serve(served) as (url, hits):
        monkeypatch.setenv("P2P_ZOO_URL", url)
        G = p2p.load_generator("tiny_label2photo")
        config = generator_config(G)
        again = p2p.load_generator("tiny_label2photo")
    assert hits == ["/tiny.pth"]  # the second load came from the cache
    assert same_outputs(src, G) and same_outputs(src, again)
    assert config["direction"] == "BtoA" and config["inference"] == "paper"
    # the metadata travels with save_pretrained
    G.save_pretrained(tmp_path / "g")
    assert json.loads((tmp_path / "g" / "config.json").read_text())["direction"] == "BtoA"


def test_downloads_are_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served, cache = tmp_path / "server", tmp_path / "cache"
    served.mkdir()
    torch.save(p2p.create_model("unet_256", num_downs=6, ngf=8).state_dict(), served / "tiny.pth")
    monkeypatch.setitem(zoo.PRETRAINED, "tiny_label2photo", tiny_entry("0" * 64))
    with serve(served) as (url, _):
        monkeypatch.setenv("P2P_ZOO_URL", url)
        with pytest.raises(DownloadError, match="sha256"):
            p2p.load_generator("tiny_label2photo")
        assert not list(cache.rglob("tiny.pth"))  # the mismatching download was deleted
        # no sha256 known: the first download's hash is pinned (trust on first use) ...
        p2p.load_generator(f"{url}/tiny.pth")
        (pin,) = cache.rglob("tiny.pth.sha256")
        # ... and a changed file on the server is refused when it is downloaded again
        pin.with_name("tiny.pth").unlink()
        torch.save(p2p.create_model("unet_256", num_downs=6, ngf=8).state_dict(), served / "tiny.pth")
        with pytest.raises(DownloadError, match="pinned in"):
            p2p.load_generator(f"{url}/tiny.pth")
    assert not list(cache.rglob("*.part"))


def test_hf_hub_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    G = randomise_batchnorm(p2p.create_model("unet_128", num_downs=5, ngf=4))
    G.save_pretrained(tmp_path / "repo")
    calls = []

    def fake_download(repo_id: str, filename: str, revision: str | None = None, **kw: object) -> str:
        calls.append((repo_id, filename, revision))
        return str(tmp_path / "repo" / filename)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert same_outputs(G, p2p.load_generator("hf-hub:someone/p2p-tiny@v1"), (1, 3, 32, 32))
    assert calls == [
        ("someone/p2p-tiny", "config.json", "v1"),
        ("someone/p2p-tiny", "model.safetensors", "v1"),
    ]


def test_push_to_hub_uploads_config_and_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uploaded: dict[str, object] = {}

    class FakeApi:
        def __init__(self, token: object = None) -> None:
            pass

        def create_repo(self, repo_id: str, **kw: object) -> object:
            return type("Repo", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id: str, folder_path: Path, **kw: object) -> str:
            uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            uploaded["config"] = json.loads((Path(folder_path) / "config.json").read_text())
            return f"https://huggingface.co/{repo_id}/commit/0"

    import huggingface_hub.hub_mixin

    monkeypatch.setattr(huggingface_hub.hub_mixin, "HfApi", FakeApi)
    p2p.create_model("unet_128", num_downs=5, ngf=4).push_to_hub("someone/p2p-tiny")
    assert {"config.json", "model.safetensors"} <= set(uploaded["files"])  # type: ignore[arg-type]
    assert uploaded["config"]["name"] == "unet_256" and uploaded["config"]["num_downs"] == 5  # type: ignore[index]
