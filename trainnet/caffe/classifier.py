"""pycaffe's Classifier: a TEST Net with a Transformer in front that takes H x W x K images,
resizes them to ``image_dims``, crops the net's input size (the centre, or pycaffe's ten crops
averaged) and returns the first output's class scores per image."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from trainnet.caffe import io, mode
from trainnet.caffe.net import Net


class Classifier(Net):
    def __init__(self, model_file, pretrained_file, image_dims: Optional[Sequence[int]] = None,
                 mean=None, input_scale=None, raw_scale=None, channel_swap=None):
        super().__init__(model_file, pretrained_file, mode.TEST)
        if not self.inputs:
            raise ValueError("Classifier needs a net with an Input layer (its first input is "
                             "the image batch)")
        name = self.inputs[0]
        self.transformer = io.Transformer({name: self.blobs[name].shape})
        self.transformer.set_transpose(name, (2, 0, 1))
        for setting, value in (("set_mean", mean), ("set_input_scale", input_scale),
                               ("set_raw_scale", raw_scale), ("set_channel_swap", channel_swap)):
            if value is not None:
                getattr(self.transformer, setting)(name, value)
        self.crop_dims = np.array(self.blobs[name].shape[2:])
        self.image_dims = np.array(image_dims if image_dims is not None else self.crop_dims)

    def predict(self, inputs, oversample: bool = True) -> np.ndarray:
        """Scores (N x classes) for ``inputs``, a sequence of H x W x K images; with
        ``oversample`` the mean over the four corner crops, the centre crop and their mirrors."""
        images = np.stack([io.resize_image(np.asarray(im, np.float32), self.image_dims)
                           for im in inputs]).astype(np.float32)
        if oversample:
            crops = io.oversample(images, self.crop_dims)
        else:
            top = ((self.image_dims - self.crop_dims) / 2.0).astype(int)
            h, w = self.crop_dims
            crops = images[:, top[0]:top[0] + h, top[1]:top[1] + w, :]
        name = self.inputs[0]
        batch = np.stack([self.transformer.preprocess(name, crop) for crop in crops])
        scores = self.forward_all(**{name: batch})[self.outputs[0]]
        return scores.reshape(len(images), 10, -1).mean(1) if oversample else scores
