"""Datasets: IDX readers with a per-process cache, data-path resolution and the MNIST download.

The Data layer (``trainnet.layers.data``) reads through these; nothing here imports a layer.
"""
