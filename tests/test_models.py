"""The networks: exact sizes, receptive fields, reference parity, registry behaviour."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import p2p
from p2p.inference import inference_mode
from p2p.models import UNetGenerator


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_match_reference() -> None:
    # the reference implementation's counts (convs feeding a BatchNorm carry no bias)
    assert n_params(p2p.create_model("unet_256")) == 54_413_955
    assert n_params(p2p.create_model("patchgan_70", in_channels=6)) == 2_768_705


def test_reference_state_dict_keys_and_shapes_load(reference_dir) -> None:
    """Every key and shape of the reference unet_256 / patch70 state dicts fits p2p's networks."""
    from p2p.weights.reference import reference_to_p2p

    for fname, model in [
        ("reference_unet256_state_dict.txt", p2p.create_model("unet_256")),
        ("reference_patch70_state_dict.txt", p2p.create_model("patchgan_70", in_channels=6)),
    ]:
        ref = {}
        for line in (reference_dir / fname).read_text().splitlines():
            key, shape = line.split("\t")
            dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
            ref[key] = torch.zeros(
                dims, dtype=torch.long if key.endswith("num_batches_tracked") else torch.float
            )
        converted = reference_to_p2p(ref, model)
        model.load_state_dict(converted, strict=True)  # raises on any missing/unexpected key or shape


def test_reference_parity(reference_dir, tmp_path) -> None:
    """The reference's own outputs, reproduced to 1e-4 from its weights (eval mode and batch statistics)."""
    from safetensors.torch import load_file, save_file

    bundle = load_file(str(reference_dir / "reference_unet64_ngf8_patch70_ndf8.safetensors"))
    g_path, d_path = tmp_path / "netG.safetensors", tmp_path / "netD.safetensors"
    save_file({k[5:]: v for k, v in bundle.items() if k.startswith("netG.")}, str(g_path))
    save_file({k[5:]: v for k, v in bundle.items() if k.startswith("netD.")}, str(d_path))
    g = p2p.create_model("unet_256", num_downs=6, ngf=8, pretrained=str(g_path))
    d = p2p.create_model("patchgan_70", in_channels=6, ndf=8, pretrained=str(d_path))
    x, y = bundle["input.x"], bundle["input.y"]
    with torch.no_grad():
        g.eval()
        d.eval()
        torch.testing.assert_close(g(x), bundle["output.G_eval"], atol=1e-4, rtol=0)
        torch.testing.assert_close(d(torch.cat([x, y], 1)), bundle["output.D_eval"], atol=1e-4, rtol=0)
        d.train()
        torch.testing.assert_close(d(torch.cat([x, y], 1)), bundle["output.D_batchstats"], atol=1e-4, rtol=0)
        g.train()
        for m in g.modules():
            if isinstance(m, nn.Dropout):
                m.eval()
        torch.testing.assert_close(g(x), bundle["output.G_batchstats_nodropout"], atol=1e-4, rtol=0)


def receptive_field(d: nn.Module, in_channels: int, size: int = 512) -> int:
    """Measure the receptive field of the centre output from the gradient of the input."""
    d.eval()
    x = torch.zeros(1, in_channels, size, size, requires_grad=True)
    out = d(x)
    h, w = out.shape[-2] // 2, out.shape[-1] // 2
    out[0, 0, h, w].backward()
    nz = (x.grad[0].abs().sum(0) > 0).nonzero()
    rows = nz[:, 0].max() - nz[:, 0].min() + 1
    cols = nz[:, 1].max() - nz[:, 1].min() + 1
    assert rows == cols
    return int(rows)


@pytest.mark.parametrize(
    "name,rf", [("patchgan_1", 1), ("patchgan_16", 16), ("patchgan_70", 70), ("patchgan_286", 286)]
)
def test_discriminator_receptive_fields(name: str, rf: int) -> None:
    d = p2p.create_model(name, in_channels=6, ndf=4)
    torch.manual_seed(0)
    for p in d.parameters():  # positive weights: no gradient cancels by chance
        nn.init.uniform_(p, 0.01, 0.02)
    assert receptive_field(d, 6) == rf


def test_patchgan70_outputs_a_30x30_patch_map_at_256() -> None:
    d = p2p.create_model("patchgan_70", in_channels=6, ndf=8)
    assert d(torch.randn(2, 6, 256, 256)).shape == (2, 1, 30, 30)


@pytest.mark.parametrize("name", ["unet_128", "encoder_decoder_128", "resnet_6blocks"])
def test_generators_are_fully_convolutional(name: str) -> None:
    g = p2p.create_model(name, ngf=4).eval()
    for shape in [(128, 128), (256, 384)]:  # larger and non-square than training size
        out = g(torch.randn(1, 3, *shape))
        assert out.shape == (1, 3, *shape)
        assert out.abs().max() <= 1  # Tanh


def test_unet_rejects_sizes_it_cannot_take_with_a_clear_message() -> None:
    g = p2p.create_model("unet_256", ngf=4)
    with pytest.raises(ValueError, match="divisible by 256"):
        g(torch.randn(1, 3, 200, 300))


def test_encoder_decoder_is_the_unet_without_skips() -> None:
    unet, encdec = p2p.create_model("unet_256"), p2p.create_model("encoder_decoder_256")
    assert encdec.skip is False and unet.skip is True
    assert [type(m) for m in unet.modules()] == [type(m) for m in encdec.modules()]
    # only the decoder's input widths differ: no concatenated skip features
    assert n_params(encdec) < n_params(unet)
    x = torch.randn(1, 3, 256, 256)
    assert encdec.eval()(x).shape == x.shape


def test_unet_dropout_sits_in_three_decoder_blocks() -> None:
    g = p2p.create_model("unet_256")
    with_dropout = [i for i, block in enumerate(g.up) if any(isinstance(m, nn.Dropout) for m in block)]
    assert with_dropout == [4, 5, 6]  # the three blocks after the bottleneck's
    assert all(m.p == 0.5 for m in g.modules() if isinstance(m, nn.Dropout))


def test_init_is_the_papers() -> None:
    torch.manual_seed(0)
    g = p2p.create_model("unet_256")
    convs = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.Conv2d)])
    bns = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(convs.mean()) < 1e-3 and abs(convs.std() - 0.02) < 1e-3
    assert abs(bns.mean() - 1) < 5e-3 and abs(bns.std() - 0.02) < 5e-3


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_norm_variants_build_and_run(norm: str) -> None:
    g = p2p.create_model("unet_128", norm=norm, ngf=4)
    d = p2p.create_model("patchgan_70", norm=norm, ndf=4, in_channels=6)
    x = torch.randn(2, 3, 128, 128)
    assert d(torch.cat([x, g(x)], 1)).shape[1] == 1


def test_registry_lists_filters_and_rejects_duplicates() -> None:
    assert p2p.list_models("patchgan_*") == ["patchgan_1", "patchgan_16", "patchgan_286", "patchgan_70"]
    assert "unet_256" in p2p.list_models(kind="generator")
    assert "unet_256" not in p2p.list_models(kind="discriminator")
    with pytest.raises(ValueError, match="already registered"):

        @p2p.register_model
        def unet_256() -> nn.Module:
            return nn.Identity()


def test_create_model_errors_name_the_problem() -> None:
    with pytest.raises(
        KeyError, match=r"unknown model 'unet_512'; did you mean 'unet_128'\? choose from: .*unet_256"
    ):
        p2p.create_model("unet_512")
    with pytest.raises(
        KeyError,
        match=r"unknown pretrained model 'unet_256.facade_label2photo'; did you mean 'unet_256.facades_label2photo'\?",
    ):
        p2p.create_model("unet_256.facade_label2photo")
    with pytest.raises(
        TypeError,
        match=r"^unet_256 has no argument 'nfg'; did you mean 'ngf'\? valid: in_channels, .*num_downs",
    ):
        p2p.create_model("unet_256", nfg=32)
    with pytest.raises(TypeError, match=r"^unet_256 has no argument 'n_blocks'; valid: "):  # nothing close
        p2p.create_model("unet_256", n_blocks=3)
    with pytest.raises(ValueError, match="norm must be one of"):
        p2p.create_model("unet_256", norm="group")


def test_overrides_reach_the_constructor() -> None:
    g = p2p.create_model("unet_256", in_channels=1, out_channels=2, ngf=16, num_downs=6)
    assert isinstance(g, UNetGenerator) and g.num_downs == 6
    assert g(torch.randn(1, 1, 64, 64)).shape == (1, 2, 64, 64)


def test_paper_inference_mode_uses_batch_stats_and_dropout_and_restores_state() -> None:
    torch.manual_seed(0)
    g = p2p.create_model("unet_256", num_downs=6, ngf=8)
    g.train()
    g(torch.randn(4, 3, 64, 64))  # warm the running stats
    before = {k: v.clone() for k, v in g.state_dict().items()}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        with inference_mode(g, "eval"):
            e1, e2 = g(x), g(x)
        with inference_mode(g, "paper"):
            p1, p2_ = g(x), g(x)
    torch.testing.assert_close(e1, e2)  # eval: deterministic
    assert not torch.allclose(p1, p2_)  # paper: dropout noise at test time
    assert not torch.allclose(p1, e1)
    for k, v in g.state_dict().items():  # running stats untouched by paper-mode inference
        torch.testing.assert_close(v, before[k])
    assert g.training  # mode restored
    with pytest.raises(ValueError, match="paper"), inference_mode(g, "test"):
        pass
