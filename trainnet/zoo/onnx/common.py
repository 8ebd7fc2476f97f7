"""What export and import share: the opset, and loading the optional ``onnx`` package."""

from __future__ import annotations

import importlib

from trainnet.errors import TrainnetError

OPSET = 17  # written by export; import brings older and newer models to it first
DOMAIN = ""  # the default ONNX operator set


def require_onnx():
    """The ``onnx`` module, or one clear error saying how to install it."""
    try:
        return importlib.import_module("onnx")
    except ImportError:
        raise TrainnetError("ONNX conversion needs the onnx package: pip install "
                            "'trainnet[onnx]'") from None
