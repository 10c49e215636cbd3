"""Bad configs fail at start-up, before any data is read, naming the key and what it may be."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from p2p.config import check_config, config_dir, explain
from p2p.errors import ConfigError
from p2p.runs.train import train

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.crop_size=abc"], "Value 'abc' of type 'str' could not be converted to Integer\n    full_key: data.crop_size"),
        (["data.direction=AB"], "Invalid value 'AB', expected one of [AtoB, BtoA]\n    full_key: data.direction"),
        (["data.preprocess=resize"], "Invalid value 'resize', expected one of [resize_and_crop, crop, scale_width"),
        (["data.flip=maybe"], "full_key: data.flip"),
        (["data=folder", "data.on_bad_file=ignore"], "Invalid value 'ignore', expected one of [error, skip]\n    full_key: data.on_bad_file"),
        (["data.crop_siz=128"], "Key 'crop_siz' not in 'SyntheticData'\n    full_key: data.crop_siz"),
        (["model.val_inference=train"], "Invalid value 'train', expected one of [paper, eval]\n    full_key: model.val_inference"),
        (["model.on_nonfinite=ignore"], "full_key: model.on_nonfinite"),
        (["model.check_finite=never"], "Invalid value 'never', expected one of [auto, step, deferred]\n    full_key: model.check_finite"),
        (["model.optim.lr=fast"], "full_key: model.optim.lr"),
        (["loss.gan_mode=wgan"], "Invalid value 'wgan', expected one of [vanilla, lsgan]\n    full_key: loss.gan_mode"),
        (["trainer.max_epochs=abc"], "Value 'abc' of type 'str' could not be converted to Integer\n    full_key: trainer.max_epochs"),
        (["trainer.max_epoch=1"], "Key 'max_epoch' not in 'Trainer'"),
        # the networks take the data's channels and photo task (p2p.config.build): no model key to disagree
        (["model.in_channels=1"], "Key 'in_channels' not in 'Model'"),
        (["model.photo_task=edges"], "Key 'photo_task' not in 'Model'"),
    ],
    ids=lambda x: x[-1] if isinstance(x, list) else None,
)  # fmt: skip
def test_the_schemas_reject_wrong_types_and_choices_when_composing(
    compose_train, tmp_path: Path, overrides: list[str], expected: str
) -> None:
    """Hydra's structured configs (p2p.config.schema): the error names the key, before anything runs."""
    with pytest.raises(ConfigCompositionException) as info:
        compose_train(["debug=smoke", *overrides], tmp_path)
    assert expected in str(info.value.__cause__), str(info.value.__cause__)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.batch_size=0"], "data.batch_size: must be >= 1, got 0"),
        (["data.num_val=0"], "data.num_val: must be >= 1, got 0"),
        (["data.image_size=16"], "data.image_size: must be >= 32, got 16"),
        (["+data.crop_siz=128"], "data.crop_siz: unknown key; did you mean 'crop_size'?"),
        (["model.generator.norm=group"], "model.generator: unet_128 cannot be built: norm must be one of ('batch', 'instance', 'none'), got 'group'"),
        (["model.discriminator.norm=layer"], "model.discriminator: patchgan_70 cannot be built: norm must be one of"),
        (["model.generator.name=unet_512"], "model.generator.name: 'unet_512' is not a generator; did you mean 'unet_128'? choose from encoder_decoder_128"),
        (["model.discriminator.name=patchgan70"], "did you mean 'patchgan_70'?"),
        (["+model.generator.n_blocks=6"], "model.generator: unet_128 has no argument 'n_blocks'; valid: in_channels"),
        (["+model.discriminator.nfd=8"], "model.discriminator: patchgan_70 has no argument 'nfd'; did you mean 'ndf'?"),
        (["loss.l1_weight=0", "loss.gan_weight=0"], "loss: l1_weight and gan_weight are both 0"),
        (["model.on_nonfinite=skip", "model.check_finite=deferred"], "model.check_finite: model.on_nonfinite=skip decides before every optimiser step"),
        (["model.optim.lr=-1"], "model.optim.lr: must be >= 0, got -1"),
        (["model.optim.betas=[0.5,1.5]"], "model.optim.betas: must be two numbers in [0, 1)"),
        (["data.load_size=100"], "data.crop_size: 128 is larger than load_size=100"),
        (["data.crop_size=96", "data.load_size=100"], "data.crop_size: 96 is not a multiple of 128, which unet_128 with num_downs=7 needs (valid: 128, 256, 384, ...)"),
        (["model=unet_patch286", "+model.generator.num_downs=6", "data.crop_size=64", "data.load_size=72"], "data.crop_size: 64 is too small for model.discriminator.name=patchgan_286"),
        (["model=resnet9_patch70", "data.crop_size=126", "data.load_size=143"], "model.generator: resnet_9blocks cannot take 2x3x126x126 inputs (data.crop_size=126)"),
        (["ckpt_path=/nowhere/last.ckpt"], "ckpt_path: no checkpoint file at /nowhere/last.ckpt; give a .ckpt path, or ckpt_path=last"),
        (["seed=-3"], "seed: must be an integer >= 0 or null, got -3"),
        (["trainer.sync_batchnorm=true"], "trainer.sync_batchnorm: SyncBatchNorm needs CUDA GPUs"),
        (["model._target_=p2p.module.Pix2Pix"], "model._target_: p2p.module.Pix2Pix moved to p2p.training.Pix2Pix"),
    ],
    ids=lambda x: x[0] if isinstance(x, list) else None,
)  # fmt: skip
def test_config_errors_name_the_key_and_the_choices(
    compose_train, tmp_path: Path, overrides: list[str], expected: str
) -> None:
    """What a schema cannot say (ranges, unknown architecture arguments, shapes, files): check_config."""
    cfg = compose_train(["debug=smoke", *overrides], tmp_path)
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert expected in str(info.value), str(info.value)


def test_folder_data_checks(compose_train, tmp_path: Path) -> None:
    cfg = compose_train(["debug=smoke", "data=folder"], tmp_path)
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    text = str(info.value)
    assert "data.root: required for your own data: data.root=/path/to/dataset" in text
    cfg = compose_train(["debug=smoke", "data=folder", f"data.root={tmp_path / 'nowhere'}"], tmp_path)
    with pytest.raises(ConfigError, match=r"data.root: .*nowhere is not a folder"):
        check_config(cfg)
    cfg = compose_train(["debug=smoke", "data.batch_size=0", "model.optim.lr=-1", "seed=-3"], tmp_path)
    with pytest.raises(ConfigError, match=r"invalid config \(3 problem\(s\)\)"):  # every problem at once
        check_config(cfg)


def test_every_shipped_config_passes(compose_train, tmp_path: Path, facades_root: Path) -> None:
    """No false alarms: every option of every group at smoke sizes, and every model at full size."""
    conf = config_dir()
    runs = [
        [f"{g}={p.stem}"]
        for g in ("model", "loss", "trainer", "logger", "experiment")
        for p in (conf / g).glob("*.yaml")
    ]
    runs += [
        [f"data={p.stem}", f"data.root={facades_root}"]
        for p in (conf / "data").glob("*.yaml")
        if p.stem not in ("synthetic", "checkpoint")  # checkpoint: p2p-eval's, refused by p2p-train (below)
    ]
    runs = [[*o, "debug=smoke"] for o in runs] + [
        [f"model={p.stem}"] for p in (conf / "model").glob("*.yaml")
    ]
    with pytest.raises(ConfigError, match="data=checkpoint is p2p-eval's"):
        check_config(compose_train(["data=checkpoint", "debug=smoke"], tmp_path))
    for overrides in runs:
        if overrides == ["trainer=ddp", "debug=smoke"]:  # SyncBatchNorm on smoke's CPU: a real impossibility
            with pytest.raises(ConfigError, match=r"trainer\.sync_batchnorm: SyncBatchNorm needs CUDA GPUs"):
                check_config(compose_train(overrides, tmp_path))
            continue
        check_config(compose_train(overrides, tmp_path))


def test_bad_config_fails_before_any_data_is_read(
    compose_train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import p2p.data.validate

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("data was read before the config was checked")

    monkeypatch.setattr(p2p.data.validate, "check_splits", no_reading)
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    cfg = compose_train(
        ["debug=smoke", "data=folder", f"data.root={root}", "data.crop_size=100", "data.load_size=110"],
        tmp_path,
    )
    with pytest.raises(ConfigError, match=r"data\.crop_size: 100 is not a multiple of 128"):
        train(cfg)


@pytest.mark.parametrize(
    ("override", "hint"),
    [
        (
            "data.crop_siz=128",
            "data.crop_siz: no such key; did you mean 'crop_size'? keys of data: batch_size, cache",
        ),
        (
            "trainer.max_epoch=1",
            "trainer.max_epoch: no such key; did you mean 'max_epochs'? keys of trainer:",
        ),
        ("seeed=1", "seeed: no such key; did you mean 'seed'? keys of the config:"),
    ],
)
def test_unknown_override_hints_name_the_valid_keys(
    compose_train, tmp_path: Path, override: str, hint: str
) -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose_train(["debug=smoke", "model=unet_patch1", override], tmp_path)
    assert (explain(info.value) or "").startswith(hint), explain(info.value)


def test_a_missing_value_gets_no_false_hint(compose_train, tmp_path: Path) -> None:
    """Issue 11 item 3: with data=folder (data.root=???) a misspelt key's hint names that key only."""
    with pytest.raises(ConfigCompositionException) as info:
        compose_train(["debug=smoke", "data=folder", "trainer.max_epoch=1"], tmp_path)
    hint = explain(info.value) or ""
    assert hint.startswith("trainer.max_epoch: no such key; did you mean 'max_epochs'?"), hint
    assert "data.root" not in hint, hint


def test_a_missing_value_is_not_taken_for_a_missing_key(compose_train, tmp_path: Path) -> None:
    """Issue 11's false hint: a mandatory value is a key that exists; its error is a config check's."""
    cfg = compose_train(["debug=smoke", "data=folder"], tmp_path)
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert "data.root: required for your own data" in str(info.value) and "did you mean" not in str(
        info.value
    )


@pytest.mark.slow
def test_cli_config_errors_exit_cleanly(tmp_path: Path) -> None:
    """The command line: a misspelt key gets Hydra's error plus the valid keys; a p2p config error exits 2 with
    its message and no traceback, before any data is read."""
    typo = subprocess.run(
        [str(BIN / "p2p-train"), "debug=smoke", "data.crop_siz=128"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert typo.returncode == 2  # a usage error
    assert (
        "p2p-train: error: Could not override 'data.crop_siz': Key 'crop_siz' not in 'SyntheticData'"
        in typo.stderr
    )
    assert "data.crop_siz: no such key; did you mean 'crop_size'?" in typo.stderr  # ours
    bad = subprocess.run(
        [str(BIN / "p2p-train"), "debug=smoke", "data.crop_size=96", "data.load_size=100", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    out = bad.stdout + bad.stderr
    assert bad.returncode == 2, out[-2000:]
    assert (
        "p2p-train: error: invalid config (1 problem(s)):" in out
        and "data.crop_size: 96 is not a multiple of 128" in out
    )
    assert "Traceback" not in out and not (tmp_path / "run" / "checkpoints").exists()


def test_explain_never_calls_an_existing_key_missing() -> None:
    """Issue 11 item 3: a key present in its node (e.g. a mandatory ``???`` value) is never "no such key"."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError

    node = OmegaConf.create({"root": "???", "batch_size": 1})
    cause = ConfigKeyError("missing value")
    cause.parent_node, cause.key, cause.full_key = node, "root", "data.root"
    error = RuntimeError("wrapped")
    error.__cause__ = cause
    assert explain(error) is None
    cause.key, cause.full_key = "rot", "data.rot"
    assert (explain(error) or "").startswith("data.rot: no such key; did you mean 'root'?")


def test_a_bad_checkpoint_to_resume_from_is_named_before_any_data_is_read(
    compose_train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11 item 5: a truncated .ckpt, random bytes, a generator-only best file and a checkpoint of other
    networks each get one line naming the file and what is wrong, from the config check."""
    first = train(compose_train(["debug=smoke", "trainer.max_epochs=1", "logger=none"], tmp_path / "run"))
    last = Path(first["last_ckpt"])
    blob = last.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "noise.ckpt").write_bytes(bytes(range(256)) * 64)
    g_only = tmp_path / "g_only.ckpt"  # what a best_epoch file holds once it is no longer a link to last
    torch.save(
        {k: v for k, v in torch.load(last, weights_only=True).items() if k != "optimizer_states"}, g_only
    )

    import p2p.data.validate

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("data was read before the checkpoint was checked")

    monkeypatch.setattr(p2p.data.validate, "check_splits", no_reading)
    cases = [
        ([f"ckpt_path={tmp_path / 'cut.ckpt'}"], f"ckpt_path: {tmp_path / 'cut.ckpt'}: not a checkpoint (truncated, corrupt, or not a torch file)"),
        ([f"ckpt_path={tmp_path / 'noise.ckpt'}"], f"ckpt_path: {tmp_path / 'noise.ckpt'}: not a checkpoint"),
        ([f"ckpt_path={g_only}"], f"ckpt_path: {g_only} holds a generator's weights, not a run to resume"),
        (["model=resnet9_patch70", f"ckpt_path={last}"], "holds another generator (unet_256) than model.generator builds (resnet_9blocks): "),
        (["model.discriminator.name=patchgan_16", f"ckpt_path={last}"], "holds another discriminator (patchgan_70) than model.discriminator builds (patchgan_16): "),
        (["loss=l1", f"ckpt_path={last}"], "was trained with a discriminator, but loss.gan_weight=0.0 trains none"),
        (["loss=l1_gan", f"ckpt_path={last}"], "than model.discriminator builds (patchgan_70): model.0.weight is [8, 6, 4, 4] in the file, [8, 3, 4, 4] built"),
        # a config that cannot build its networks: that problem alone, not a traceback from the comparison
        (["loss.l1_weight=-1", f"ckpt_path={last}"], "invalid config (1 problem(s)):\n  loss.l1_weight: must be >= 0, got -1"),
        (["+model.generator.nfg=1", f"ckpt_path={last}"], "invalid config (1 problem(s)):\n  model.generator: unet_128 has no argument 'nfg'; did you mean 'ngf'?"),
    ]  # fmt: skip
    for overrides, expected in cases:
        cfg = compose_train(["debug=smoke", "trainer.max_epochs=2", *overrides], tmp_path / "again")
        with pytest.raises(ConfigError) as info:
            train(cfg)
        assert expected in str(info.value), (overrides, str(info.value))
        assert "--allow-pickle" not in str(info.value) and "allow_pickle" not in str(info.value)
    check_config(compose_train(["debug=smoke", "trainer.max_epochs=2", f"ckpt_path={last}"], tmp_path / "ok"))
