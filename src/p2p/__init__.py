"""p2p: pix2pix (Isola et al., CVPR 2017) as a PyTorch Lightning + Hydra library.

The package is layered; each folder is one layer and imports only from those below it (the contract is
in pyproject.toml, checked by ``lint-imports``):

    cli        the console scripts, one thin module each, one error wrapper
    runs       whole runs from a composed config: train, evaluate, bench, report
    config     where the configs live, their schemas, the checks schemas cannot express, building objects
    metrics    evaluation metrics (torchmetrics where it computes the same thing), FID, FCN-score, colour
    training   the LightningModule (the paper's algorithm), objective, callbacks, speed settings
    demo       the p2p-demo web page (Gradio, the demo extra; not imported by `import p2p`)
    inference  inference modes, Translator (any image size), export, image grids
    data       datasets, transforms, data modules, dataset downloads
    weights    one reader for every weights source; reference-layout conversion; load_generator
    models     networks, registry, zoo entries, save_pretrained          (imports nothing else of p2p)
    io         images, the download cache, all-or-nothing writes
    errors     the error types every layer raises
"""

from __future__ import annotations

from p2p.inference import Translator
from p2p.models import list_models, register_model
from p2p.models.hub import p2p_version
from p2p.weights import create_model, load_generator

__version__ = p2p_version()
__all__ = ["Translator", "__version__", "create_model", "list_models", "load_generator", "register_model"]
