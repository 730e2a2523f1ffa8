"""What is committed under src/radview/models_onnx: every model, valid, small enough."""

from __future__ import annotations

import numpy as np

from radview.inference.registry import discover_models
from training.train import MODEL_IDS


def test_shipped_models_are_valid_and_small():
    """What is committed under src/radview/models_onnx: valid in the registry, <= 30 MB."""
    from radview.inference.registry import default_builtin_dir

    folder = default_builtin_dir()
    files = list(folder.glob("*/*.onnx"))
    assert len(files) == len(MODEL_IDS)
    assert sum(f.stat().st_size for f in files) <= 30 * 1024 * 1024
    registry = discover_models(builtin_dir=folder, user_dir=folder / "no-user-models",
                               entry_points=False)
    assert not registry.invalid, [m.reason for m in registry.invalid]
    assert np.all([m.manifest.opset >= 17 for m in registry.valid])
