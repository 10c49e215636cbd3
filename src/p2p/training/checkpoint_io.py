"""Atomic checkpoint writes (`p2p.io.atomic_save`): a crash, a full disk or a second SIGTERM while saving
never leaves a torn ``last.ckpt``, so there is always one complete checkpoint to resume from. Remote paths
(``s3://`` ...) go through Lightning's own writer.
"""

from __future__ import annotations

from typing import Any

from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

from p2p.io import atomic_save


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's TorchCheckpointIO with `atomic_save` for local paths (``Trainer(plugins=[...])``)."""

    @override
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        protocol = get_filesystem(path).protocol
        local = "file" in ((protocol,) if isinstance(protocol, str) else protocol)
        if storage_options is not None or not local:
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_save(checkpoint, path)
