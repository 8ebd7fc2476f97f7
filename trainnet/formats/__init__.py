"""File formats and small shared helpers at the bottom of the data flow.

Caffe's protobuf schema (``caffe_pb``) and type names (``caffe_types``), binaryproto blobs and
means (``blobproto``), Caffe models (``caffemodel``, ``caffemodel_h5``), solver states
(``solverstate``), safetensors (``tensorfile``), HDF5 (``hdf5``), bounded reads (``limits``),
atomic file writes (``atomic``), the ``layer.index`` weight key (``weightkey``) and a random
generator's state as JSON or bytes (``rngstate``).  Nothing here imports any other part of
trainnet except its errors (tests/test_layering.py keeps it so), so every package above
(netcfg, data, layers, plan, runtime, solver, zoo, cli) may use it.
"""
