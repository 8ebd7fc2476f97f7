"""Caffe's field numbers and enum values (BVLC caffe.proto, master), by message.

Only numbers live here: which fields a message has, their types, labels and defaults come from
trainnet's pydantic schema (``schema.py`` walks it).  A schema field missing from these tables is
left out of the message and listed in ``caffe_pb2.UNNUMBERED``, which a test keeps empty.

Numbers from 1000 up are trainnet's own (fields and enum values its schema adds to Caffe's, the
``beyond_caffe`` of a layer type): Caffe never uses them, so its parser keeps them as unknown
fields in a binary message and refuses them in text, as it refuses them in a prototxt anyway.
"""

from __future__ import annotations

D = dict

NET = D(name=1, input=3, input_shape=8, input_dim=4, force_backward=5, state=6, debug_info=7,
        layer=100, layers=2)

LAYER = D(name=1, type=2, bottom=3, top=4, phase=10, loss_weight=5, param=6, blobs=7,
          propagate_down=11, include=8, exclude=9, transform_param=100)

# LayerParameter's ``<x>_param`` fields: (number, message type).
LAYER_PARAMS = {
    "loss_param": (101, "LossParameter"), "accuracy_param": (102, "AccuracyParameter"),
    "argmax_param": (103, "ArgMaxParameter"), "batch_norm_param": (139, "BatchNormParameter"),
    "bias_param": (141, "BiasParameter"), "clip_param": (148, "ClipParameter"),
    "concat_param": (104, "ConcatParameter"),
    "contrastive_loss_param": (105, "ContrastiveLossParameter"),
    "convolution_param": (106, "ConvolutionParameter"), "crop_param": (144, "CropParameter"),
    "data_param": (107, "DataParameter"), "dropout_param": (108, "DropoutParameter"),
    "dummy_data_param": (109, "DummyDataParameter"), "eltwise_param": (110, "EltwiseParameter"),
    "elu_param": (140, "ELUParameter"), "embed_param": (137, "EmbedParameter"),
    "exp_param": (111, "ExpParameter"), "flatten_param": (135, "FlattenParameter"),
    "hdf5_data_param": (112, "HDF5DataParameter"),
    "hdf5_output_param": (113, "HDF5OutputParameter"),
    "hinge_loss_param": (114, "HingeLossParameter"),
    "image_data_param": (115, "ImageDataParameter"),
    "infogain_loss_param": (116, "InfogainLossParameter"),
    "inner_product_param": (117, "InnerProductParameter"), "input_param": (143, "InputParameter"),
    "log_param": (134, "LogParameter"), "lrn_param": (118, "LRNParameter"),
    "memory_data_param": (119, "MemoryDataParameter"), "mvn_param": (120, "MVNParameter"),
    "pooling_param": (121, "PoolingParameter"), "power_param": (122, "PowerParameter"),
    "prelu_param": (131, "PReLUParameter"), "python_param": (130, "PythonParameter"),
    "reduction_param": (136, "ReductionParameter"),
    "relu_param": (123, "ReLUParameter"), "reshape_param": (133, "ReshapeParameter"),
    "scale_param": (142, "ScaleParameter"), "sigmoid_param": (124, "SigmoidParameter"),
    "softmax_param": (125, "SoftmaxParameter"), "slice_param": (126, "SliceParameter"),
    "swish_param": (147, "SwishParameter"), "tanh_param": (127, "TanHParameter"),
    "threshold_param": (128, "ThresholdParameter"), "tile_param": (138, "TileParameter"),
}

# V1LayerParameter (``layers { type: CONVOLUTION ... }``): its own numbers for the same messages.
V1_LAYER = D(bottom=2, top=3, name=4, include=32, exclude=33, type=5, blobs=6, param=1001,
             blob_share_mode=1002, blobs_lr=7, weight_decay=8, loss_weight=35, layer=1)
V1_PARAMS = D(accuracy_param=27, argmax_param=23, concat_param=9, contrastive_loss_param=40,
              convolution_param=10, data_param=11, dropout_param=12, dummy_data_param=26,
              eltwise_param=24, exp_param=41, hdf5_data_param=13, hdf5_output_param=14,
              hinge_loss_param=29, image_data_param=15, infogain_loss_param=16,
              inner_product_param=17, lrn_param=18, memory_data_param=22, mvn_param=34,
              pooling_param=19, power_param=21, relu_param=30, sigmoid_param=38,
              softmax_param=39, slice_param=31, tanh_param=37, threshold_param=25,
              transform_param=36, loss_param=42)

SOLVER = D(net=24, net_param=25, train_net=1, test_net=2, train_net_param=21, test_net_param=22,
           train_state=26, test_state=27, test_iter=3, test_interval=4, test_compute_loss=19,
           test_initialization=32, base_lr=5, display=6, average_loss=33, max_iter=7,
           iter_size=36, lr_policy=8, gamma=9, power=10, momentum=11, weight_decay=12,
           regularization_type=29, stepsize=13, stepvalue=34, clip_gradients=35, snapshot=14,
           snapshot_prefix=15, snapshot_diff=16, snapshot_format=37, solver_mode=17,
           device_id=18, random_seed=20, type=40, delta=31, momentum2=39, rms_decay=38,
           debug_info=23, snapshot_after_train=28, solver_type=30, layer_wise_reduce=41,
           weights=42, snapshot_keep=1000, loss_explosion_factor=1001)

LAYER.update({field: number for field, (number, _) in LAYER_PARAMS.items()})
V1_LAYER.update(V1_PARAMS)

# Every message: field -> number.
FIELDS = {
    "NetParameter": NET, "LayerParameter": LAYER, "SolverParameter": SOLVER,
    "V1LayerParameter": V1_LAYER,
    "NetState": D(phase=1, level=2, stage=3),
    "NetStateRule": D(phase=1, min_level=2, max_level=3, stage=4, not_stage=5),
    "ParamSpec": D(name=1, share_mode=2, lr_mult=3, decay_mult=4),
    "FillerParameter": D(type=1, value=2, min=3, max=4, mean=5, std=6, sparse=7, variance_norm=8),
    "TransformationParameter": D(scale=1, mirror=2, crop_size=3, mean_file=4, mean_value=5,
                                 force_color=6, force_gray=7),
    "LossParameter": D(ignore_label=1, normalization=3, normalize=2),
    "AccuracyParameter": D(top_k=1, axis=2, ignore_label=3),
    "ArgMaxParameter": D(out_max_val=1, top_k=2, axis=3),
    "BatchNormParameter": D(use_global_stats=1, moving_average_fraction=2, eps=3),
    "BiasParameter": D(axis=1, num_axes=2, filler=3),
    "ClipParameter": D(min=1, max=2),
    "ConcatParameter": D(axis=2, concat_dim=1),
    "ContrastiveLossParameter": D(margin=1, legacy_version=2),
    "ConvolutionParameter": D(num_output=1, bias_term=2, pad=3, kernel_size=4, stride=6,
                              dilation=18, pad_h=9, pad_w=10, kernel_h=11, kernel_w=12,
                              stride_h=13, stride_w=14, group=5, weight_filler=7, bias_filler=8,
                              engine=15, axis=16, force_nd_im2col=17),
    "CropParameter": D(axis=1, offset=2),
    # scale, mean_file, crop_size, mirror: deprecated, moved to transform_param by V1 upgrades
    "DataParameter": D(source=1, batch_size=4, rand_skip=7, backend=8, scale=2, mean_file=3,
                       crop_size=5, mirror=6, force_encoded_color=9, prefetch=10,
                       label_source=1000, shuffle=1001, workers=1002, skip_bad=1003),
    # scale_train: not in BVLC's message; field 3 as in Intel's Caffe, which added it
    "DropoutParameter": D(dropout_ratio=1, scale_train=3),
    "DummyDataParameter": D(data_filler=1, shape=6, num=2, channels=3, height=4, width=5),
    "EltwiseParameter": D(operation=1, coeff=2, stable_prod_grad=3),
    "ELUParameter": D(alpha=1),
    "EmbedParameter": D(num_output=1, input_dim=2, bias_term=3, weight_filler=4, bias_filler=5),
    "ExpParameter": D(base=1, scale=2, shift=3),
    "FlattenParameter": D(axis=1, end_axis=2),
    "HDF5DataParameter": D(source=1, batch_size=2, shuffle=3, prefetch=1000, workers=1001),
    "HDF5OutputParameter": D(file_name=1),
    "HingeLossParameter": D(norm=1),
    "ImageDataParameter": D(source=1, batch_size=4, rand_skip=7, shuffle=8, new_height=9,
                            new_width=10, is_color=11, scale=2, mean_file=3, crop_size=5,
                            mirror=6, root_folder=12, prefetch=1000, workers=1001, skip_bad=1002),
    "InfogainLossParameter": D(source=1, axis=2),
    "InnerProductParameter": D(num_output=1, bias_term=2, weight_filler=3, bias_filler=4, axis=5,
                               transpose=6),
    "InputParameter": D(shape=1),
    "LogParameter": D(base=1, scale=2, shift=3),
    "LRNParameter": D(local_size=1, alpha=2, beta=3, norm_region=4, k=5, engine=6),
    "MemoryDataParameter": D(batch_size=1, channels=2, height=3, width=4),
    "MVNParameter": D(normalize_variance=1, across_channels=2, eps=3),
    "PoolingParameter": D(pool=1, pad=4, pad_h=9, pad_w=10, kernel_size=2, kernel_h=5, kernel_w=6,
                          stride=3, stride_h=7, stride_w=8, engine=11, global_pooling=12,
                          round_mode=13),
    "PowerParameter": D(power=1, scale=2, shift=3),
    "PReLUParameter": D(filler=1, channel_shared=2),
    "PythonParameter": D(module=1, layer=2, param_str=3, share_in_parallel=4),
    "ReductionParameter": D(operation=1, axis=2, coeff=3),
    "ReLUParameter": D(negative_slope=1, engine=2),
    "ReshapeParameter": D(shape=1, axis=2, num_axes=3),
    "ScaleParameter": D(axis=1, num_axes=2, filler=3, bias_term=4, bias_filler=5),
    "SigmoidParameter": D(engine=1),
    "SliceParameter": D(axis=3, slice_point=2, slice_dim=1),
    "SoftmaxParameter": D(engine=1, axis=2),
    "SwishParameter": D(beta=1),
    "TanHParameter": D(engine=1),
    "ThresholdParameter": D(threshold=1),
    "TileParameter": D(axis=1, tiles=2),
}

ENGINE = D(DEFAULT=0, CAFFE=1, CUDNN=2)
# (message, field) -> (enum type name inside the message, its values).  Phase is file-level.
ENUMS = {
    ("FillerParameter", "variance_norm"): ("VarianceNorm", D(FAN_IN=0, FAN_OUT=1, AVERAGE=2)),
    ("ParamSpec", "share_mode"): ("DimCheckMode", D(STRICT=0, PERMISSIVE=1)),
    ("V1LayerParameter", "blob_share_mode"): ("DimCheckMode", D(STRICT=0, PERMISSIVE=1)),
    ("LossParameter", "normalization"): ("NormalizationMode",
                                         D(FULL=0, VALID=1, BATCH_SIZE=2, NONE=3)),
    ("DataParameter", "backend"): ("DB", D(LEVELDB=0, LMDB=1, IDX=1000, CIFAR=1001)),
    ("EltwiseParameter", "operation"): ("EltwiseOp", D(PROD=0, SUM=1, MAX=2)),
    ("HingeLossParameter", "norm"): ("Norm", D(L1=1, L2=2)),
    ("LRNParameter", "norm_region"): ("NormRegion", D(ACROSS_CHANNELS=0, WITHIN_CHANNEL=1)),
    ("PoolingParameter", "pool"): ("PoolMethod", D(MAX=0, AVE=1, STOCHASTIC=2)),
    ("PoolingParameter", "round_mode"): ("RoundMode", D(CEIL=0, FLOOR=1)),
    ("ReductionParameter", "operation"): ("ReductionOp", D(SUM=1, ASUM=2, SUMSQ=3, MEAN=4)),
    ("SolverParameter", "snapshot_format"): ("SnapshotFormat",
                                             D(HDF5=0, BINARYPROTO=1, SAFETENSORS=1000)),
    ("SolverParameter", "solver_mode"): ("SolverMode", D(CPU=0, GPU=1)),
    ("SolverParameter", "solver_type"): ("SolverType", D(SGD=0, NESTEROV=1, ADAGRAD=2, RMSPROP=3,
                                                         ADADELTA=4, ADAM=5)),
    **{(m, "engine"): ("Engine", ENGINE) for m in (
        "ConvolutionParameter", "LRNParameter", "PoolingParameter", "ReLUParameter",
        "SigmoidParameter", "SoftmaxParameter", "TanHParameter")},
}
PHASE = D(TRAIN=0, TEST=1)

# Defaults Caffe declares where trainnet's schema has none (an unset Optional) or another.
CAFFE_DEFAULTS = {
    ("SolverParameter", "solver_mode"): "GPU", ("SolverParameter", "snapshot_format"): "BINARYPROTO",
    ("SolverParameter", "base_lr"): None, ("SolverParameter", "lr_policy"): None,
    ("SolverParameter", "snapshot_prefix"): None, ("LossParameter", "normalization"): "VALID",
    ("ConcatParameter", "concat_dim"): 1, ("SliceParameter", "slice_dim"): 1,
    ("ConvolutionParameter", "pad_h"): 0, ("ConvolutionParameter", "pad_w"): 0,
    ("PoolingParameter", "pad_h"): 0, ("PoolingParameter", "pad_w"): 0,
    ("DataParameter", "backend"): "LEVELDB",
}
