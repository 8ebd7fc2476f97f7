"""Model zoo: Caffe model definitions, and Caffe prototxt/caffemodel import and export."""

from trainnet.zoo import registry  # noqa: F401  (registers zoo:NAME with netcfg's net loader)
