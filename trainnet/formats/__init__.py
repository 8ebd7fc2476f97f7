"""File formats and small shared helpers at the bottom of the data flow.

Caffe's protobuf schema (``caffe_pb``), binaryproto blobs and means (``blobproto``) and atomic
file writes (``atomic``).  Nothing here imports any other part of trainnet except its errors, so
every package above (netcfg, layers, data, plan, runtime, solver, zoo) may use it.
"""
