"""trainnet: a config-file driven neural-network trainer in the Caffe tradition."""

from trainnet.errors import ConfigError, TrainnetError

__version__ = "0.1.0"
__all__ = ["ConfigError", "TrainnetError", "__version__"]
