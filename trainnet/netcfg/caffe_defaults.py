"""Where a prototxt written for Caffe must say more than trainnet's defaults would.

The writers leave out a field that holds trainnet's default.  That is right only where Caffe
assumes the same value, so ``CAFFE_DEFAULTS`` lists the fields where it does not: trainnet's
default differs from caffe.proto's, or caffe.proto has none and Caffe needs a value.  The prototxt
writer writes such a field whenever its value is not Caffe's default, and always (when it has a
value) where the entry is ``REQUIRED``.

Keys: the message type for the net, the solver and the messages that many layers share
(``"SolverParameter"``, ``"FillerParameter"``); for a layer type's own parameters, the
LayerParameter field that holds them, as the type's ``caffe_params`` names it (``"data_param"``).
A layer ``Params`` model adds its entries under its message, ``"<field>": <caffe.proto's default>``,
each with a comment citing caffe.proto; a field whose default equals Caffe's needs no entry.

Checked against caffe.proto and found equal, so without entries: NetParameter (name,
force_backward, state), LayerParameter, NetState, NetStateRule, ParamSpec, FillerParameter,
TransformationParameter, BlobShape, and every layer message other than those below.  Two layer
defaults differ from caffe.proto's message default but match what Caffe's layer assumes when the
message is absent: Scale's ``filler`` (ScaleLayer: constant 1) and PReLU's (PReLULayer: constant
0.25); a written filler is then always Caffe's own reading of it.
"""

from __future__ import annotations

from typing import Any


class _Required:
    """caffe.proto declares no default, and Caffe cannot run without a value."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

CAFFE_DEFAULTS: dict[str, dict[str, Any]] = {
    "SolverParameter": {
        # optional float base_lr = 5;  (no default: Caffe would train at rate 0)
        "base_lr": REQUIRED,
        # optional string lr_policy = 8;  (no default: SGDSolver::GetLearningRate fails on "")
        "lr_policy": REQUIRED,
        # optional SolverMode solver_mode = 17 [default = GPU];  (trainnet: CPU)
        "solver_mode": "GPU",
    },
}


def caffe_needs(key: str) -> dict[str, Any]:
    """The entries of one message (``"SolverParameter"``, ``"data_param"``); empty if none."""
    return CAFFE_DEFAULTS.get(key, {})


def must_write(value: Any, caffe_default: Any) -> bool:
    """Whether a field holding ``value`` must be written for Caffe to read it so."""
    if value is None or value == []:
        return False  # nothing to write (a REQUIRED field left out is the config's own error)
    return caffe_default is REQUIRED or value != caffe_default
