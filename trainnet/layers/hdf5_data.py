"""HDF5Data: tops read from HDF5 files, each top from the dataset of its own name.

Caffe's HDF5DataLayer: ``source`` is a text file listing .h5 files; a top's shape is
(batch_size,) plus its dataset's shape beyond the first axis.  With ``shuffle`` the files' order
and the items within each file are shuffled at each epoch, as in Caffe (a file at a time is in
memory).  No transform_param: HDF5 data is taken as it is stored (Caffe refuses one too).
"""

from __future__ import annotations

from pydantic import Field

from trainnet.data.hdf5 import HDF5Feeder, HDF5Source, read_file_list
from trainnet.data.paths import list_base, resolve_data_path
from trainnet.errors import TrainnetError
from trainnet.layers.base import register
from trainnet.layers.data_base import DataLayer
from trainnet.netcfg.common import Strict


class HDF5DataParams(Strict):
    source: str = Field(min_length=1)   # a text file naming the .h5 files
    batch_size: int = Field(ge=1)
    shuffle: bool = False
    prefetch: int = Field(4, ge=0)      # beyond Caffe's HDF5Data
    workers: int = Field(1, ge=0)


@register("HDF5Data")
class HDF5Data(DataLayer):
    Params = HDF5DataParams
    caffe_params = {"hdf5_data_param": None}
    beyond_caffe = ("prefetch", "workers")
    num_tops = (1, None)

    def setup(self, bottom_shapes):
        self.check_no_transform()
        names = list(getattr(self.common, "top", None) or ["data"])
        try:
            listing = resolve_data_path(self.p.source, self.data_root, what="HDF5 file list")
            files = read_file_list(listing)
            base = list_base(files[0], listing, self.data_root.caffe)
            self.source = HDF5Source([base / f for f in files], names)
        except TrainnetError as exc:
            raise self.error(str(exc)) from None
        return [(self.p.batch_size,) + self.source.item_shapes[n] for n in names]

    def make_reader(self, rng):
        return self.batch_reader(HDF5Feeder(self.source), rng)
