"""Model zoo: Caffe model definitions, and Caffe prototxt/caffemodel import and export."""

from trainnet.zoo import registry  # registers zoo:NAME with netcfg's net loader

__all__ = ["registry"]
