"""Caffe's UpgradeNetDataTransformation (upgrade_proto.cpp), on a prototxt layer's fields.

Old data layers set their preprocessing in their own message: ``scale``, ``mean_file``,
``crop_size`` and ``mirror`` in ``data_param``, ``image_data_param`` or ``window_data_param``.
Caffe moves them into the layer's ``transform_param`` in V1 nets (``layers { }``) and only
there: a current-format layer's data layer reads ``transform_param`` alone and ignores them.  The
reader upgrades V1 layers the same way, before a layer's parameter messages are flattened, so no
data layer's Params model ever sees them; in a current layer they are an error, since Caffe would
silently train without them.  A field given in both places is an error too (Caffe would keep the
deprecated value silently).
"""

from __future__ import annotations

from trainnet.errors import ConfigError
from trainnet.netcfg.text_format import Field

DEPRECATED_TRANSFORM = ("scale", "mean_file", "crop_size", "mirror")
DATA_MESSAGES = ("data_param", "image_data_param", "window_data_param")


def _refuse(message: str, g: Field, layer: list[Field], file: str, why: str) -> ConfigError:
    name = next((f.value for f in layer if f.key == "name" and not f.message), None)
    type_name = next((f.value for f in layer if f.key == "type" and not f.message), None)
    return ConfigError(why, file=file, line=g.line, layer=name, layer_type=type_name,
                       field=f"{message}.{g.key}")


def upgrade_data_transformation(layer: list[Field], file: str, v1: bool = True) -> list[Field]:
    """``layer``'s fields with the deprecated transformation fields moved to ``transform_param``
    (a V1 layer), or refused (a current one)."""
    moved: list[tuple[str, Field]] = []   # (the data message, the field moved out of it)
    out: list[Field] = []
    for f in layer:
        if f.key in DATA_MESSAGES and f.message:
            moved += [(f.key, g) for g in f.value if g.key in DEPRECATED_TRANSFORM]
            f = Field(f.key, [g for g in f.value if g.key not in DEPRECATED_TRANSFORM], f.line,
                      message=True)
        out.append(f)
    if not moved:
        return layer
    if not v1:
        message, g = moved[0]
        raise _refuse(message, g, layer, file, "deprecated, and Caffe ignores it in a current-format "
                      "layer (it upgrades only V1 'layers'): give it in transform_param")
    given = {g.key: g for t in out if t.key == "transform_param" and t.message for g in t.value}
    for message, g in moved:
        if g.key in given:
            raise _refuse(message, g, layer, file, f"also given in transform_param (line "
                          f"{given[g.key].line}); the deprecated {message} field moves there (as "
                          "Caffe upgrades it): give it once, in transform_param")
    fields = [g for _, g in moved]
    at = next((i for i, f in enumerate(out) if f.key == "transform_param" and f.message), None)
    if at is None:
        return out + [Field("transform_param", fields, fields[0].line, message=True)]
    out[at] = Field("transform_param", out[at].value + fields, out[at].line, message=True)
    return out
