"""An independent oracle for one training iteration (paper section 3.3), written from the paper's formulas.

Nothing of p2p's objective is imported here: no ``gan_loss``, ``discriminator_loss``, ``Objective`` or the
bench's ``PlainLoop``. The networks are p2p's (they are tested on their own elsewhere); what this checks is
what the LightningModule does with them:

    D step:  L_D = 0.5 * (BCE(D(x, y), 1) + BCE(D(x, G(x).detach()), 0))       (halved, section 3.3)
    G step:  L_G = gan_weight * BCE(D(x, G(x)), 1) + lambda * mean|y - G(x)|   (non-saturating, eq. 4)

Adam is scale-invariant (a loss times 2 gives the same update, up to eps), so comparing updated weights
alone could not see a D loss that is not halved. The oracle compares the gradients each optimiser is about
to apply, then the weights after both steps, then the BatchNorm buffers (D runs three times: real, fake,
and the G step's fake).
"""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from p2p.training import Pix2Pix

SMALL_G = {"name": "unet_256", "num_downs": 5, "ngf": 4}
SMALL_D = {"name": "patchgan_70", "ndf": 4}
SEED = 1234  # re-seeded just before each forward of G, so the oracle draws the same dropout masks


def bce_with_logits(z: torch.Tensor, target: float) -> torch.Tensor:
    """-[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))], averaged, in its overflow-free form."""
    return (z.clamp_min(0) - z * target + torch.log1p(torch.exp(-z.abs()))).mean()


def oracle_step(G, D, x, y, *, lam: float, gan_weight: float, conditional: bool = True):
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def d(inp, out):
        return D(torch.cat([inp, out], 1) if conditional else out)

    torch.manual_seed(SEED)
    fake = G(x)
    # D: maximise log D(x, y) + log(1 - D(x, G(x))), i.e. minimise the BCE to 1 and 0; halved
    loss_d = 0.5 * (bce_with_logits(d(x, y), 1.0) + bce_with_logits(d(x, fake.detach()), 0.0))
    opt_d.zero_grad()
    loss_d.backward()
    grads_d = [p.grad.detach().clone() for p in D.parameters()]
    opt_d.step()
    # G: non-saturating: minimise -log D(x, G(x)) (BCE to 1), plus lambda * L1
    loss_g = gan_weight * bce_with_logits(d(x, fake), 1.0) + lam * (y - fake).abs().mean()
    opt_g.zero_grad()
    loss_g.backward()
    grads_g = [p.grad.detach().clone() for p in G.parameters()]
    opt_g.step()
    return grads_d, grads_g, loss_d.item(), loss_g.item()


def p2p_step(model: Pix2Pix, batch: dict, tmp_path):
    """One iteration of p2p's own module under a Lightning Trainer, recording the gradients it applies."""
    grads: dict[str, list[torch.Tensor]] = {}

    def reseed(module, args) -> None:  # returns None: the input goes through unchanged
        torch.manual_seed(SEED)

    model.G.register_forward_pre_hook(reseed)
    orig = model.configure_optimizers

    def recording():
        opts, scheds = orig()
        for name, opt in zip(["G", "D"], opts):
            hook = lambda o, *a, name=name: grads.__setitem__(  # noqa: E731
                name, [p.grad.detach().clone() for g in o.param_groups for p in g["params"]]
            )
            opt.register_step_pre_hook(hook)
        return opts, scheds

    model.configure_optimizers = recording  # type: ignore[method-assign]
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=1, limit_val_batches=0, accelerator="cpu", devices=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(model, DataLoader([batch], batch_size=None))
    m = trainer.callback_metrics
    return grads["D"], grads["G"], float(m["train/loss_d"]), float(m["train/loss_g"])


# Tolerances: both sides run the same float32 operations, except that the BCE is written out here (PyTorch's
# fused kernel rounds differently) and p2p's Adam may be the fused one. Measured on this CPU over the three
# cases below: gradients differ by at most 1.1e-6 of their tensor's largest entry (so 1e-5 here: a loss
# not halved or a weight dropped moves them by 0.1 to 1), weights after the steps by at most 1.8e-7
# absolute (so 1e-6, 1/200 of Adam's first-step size lr = 2e-4).
GRAD_REL = 1e-5
WEIGHT_ATOL = 1e-6


def assert_close_to_scale(a: torch.Tensor, b: torch.Tensor, rel: float, what: str) -> None:
    err, scale = (a - b).abs().max().item(), b.abs().max().item()
    assert err <= rel * scale, f"{what} differs from the oracle's by {err:.3g} (its scale {scale:.3g})"


@pytest.mark.parametrize(
    "loss",
    [
        {"gan_weight": 0.37, "l1_weight": 100.0},  # a weight other than 0/1: a dropped gan_weight shows
        {"gan_weight": 1.0, "l1_weight": 0.0},  # the cGAN row: the adversarial term alone
        {"gan_weight": 2.5, "l1_weight": 10.0, "conditional": False},  # the unconditional "GAN" D
    ],
    ids=["l1_cgan_0.37", "cgan", "l1_gan"],
)
def test_one_iteration_matches_the_papers_formulas_written_out(tmp_path, loss) -> None:
    torch.manual_seed(0)
    model = Pix2Pix(generator=SMALL_G, discriminator=SMALL_D, loss=loss)
    G0, D0 = copy.deepcopy(model.G), copy.deepcopy(model.D)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    y = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    batch = {"input": x, "target": y, "path": ["a.png", "b.png"]}

    want = oracle_step(
        G0, D0, x, y, lam=loss["l1_weight"], gan_weight=loss["gan_weight"],
        conditional=loss.get("conditional", True),
    )  # fmt: skip
    got = p2p_step(model, batch, tmp_path)

    assert got[2] == pytest.approx(want[2], rel=1e-5), "D's loss (halved BCE, real 1 / fake 0)"
    assert got[3] == pytest.approx(want[3], rel=1e-5), "G's loss (gan_weight * BCE(D(x,G(x)), 1) + lambda*L1)"
    for name, mine, theirs in [("D", got[0], want[0]), ("G", got[1], want[1])]:
        assert len(mine) == len(theirs)
        for i, (a, b) in enumerate(zip(mine, theirs)):
            assert_close_to_scale(a, b, GRAD_REL, f"{name}'s gradient {i}")
    for net, ref in [(model.G, G0), (model.D, D0)]:
        for (k, a), b in zip(net.state_dict().items(), ref.state_dict().values()):
            if a.is_floating_point():
                torch.testing.assert_close(a, b, rtol=0, atol=WEIGHT_ATOL, msg=f"{k} after the step")
            else:
                assert torch.equal(a, b), k  # BatchNorm's num_batches_tracked: D ran three times
