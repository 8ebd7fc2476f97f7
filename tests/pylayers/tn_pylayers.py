"""Python layers for tests/test_python_layer.py, written as a user would write them for pycaffe
(this folder is put on sys.path by the test).  They compute in their arrays' dtype, so that the
gradient checker's float64 runs stay exact."""

import numpy as np

from trainnet.layers.python import PythonLayer


class Scale(PythonLayer):
    """``top = factor * bottom``; the learnable factor starts at ``float(param_str)``."""

    def setup(self, bottom, top):
        if len(bottom) != 1:
            raise Exception("Scale takes one bottom")
        self.blobs.add_blob(1)
        self.blobs[0].data[...] = float(self.param_str or 1)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.blobs[0].data * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = self.blobs[0].data * top[0].diff
        self.blobs[0].diff[...] += (top[0].diff * bottom[0].data).sum()


class DeviceScale(Scale):
    """Scale on the GPU's own arrays (CuPy's, which take the same operators)."""

    cupy_arrays = True


class EuclideanLoss(PythonLayer):
    """Caffe's examples/pycaffe/layers/pyloss.py: ``sum((a - b)^2) / num / 2``."""

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("Need two inputs to compute distance.")

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception("Inputs must have the same dimension.")
        self.diff = np.zeros_like(bottom[0].data, dtype=np.float32)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.diff = bottom[0].data - bottom[1].data
        top[0].data[...] = np.sum(self.diff ** 2) / bottom[0].num / 2.

    def backward(self, top, propagate_down, bottom):
        for i in range(2):
            if not propagate_down[i]:
                continue
            sign = 1 if i == 0 else -1
            bottom[i].diff[...] = sign * self.diff * top[0].diff / bottom[i].num


class Phase(PythonLayer):
    """Writes pycaffe's phase (0 TRAIN, 1 TEST) and its blob shapes into its top."""

    has_backward = False

    def setup(self, bottom, top):
        self.seen = (bottom[0].num, bottom[0].channels, bottom[0].height, bottom[0].width)

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        top[0].data[...] = self.phase


class Fails(PythonLayer):
    """Raises inside forward."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        self.helper(bottom[0].count)

    def helper(self, n):
        raise ValueError(f"cannot handle {n} values")


class Grows(Fails):
    """Reshapes its top to another shape in forward."""

    def forward(self, bottom, top):
        top[0].reshape(bottom[0].count + 1)


class NoForward(PythonLayer):
    def setup(self, bottom, top):
        pass


class NotALayer:
    """Has the methods but not the base class."""

    def setup(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass
