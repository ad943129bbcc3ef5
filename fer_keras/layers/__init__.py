"""Layers of the papers we reproduce."""

from fer_keras.layers.arcface import ArcFace, additive_angular_margin
from fer_keras.layers.car_block import CARBlock, DSBlock
from fer_keras.layers.coordinate_attention import CoordinateAttention
from fer_keras.layers.batch_normalization import BatchNormalization

__all__ = ["ArcFace", "BatchNormalization", "CARBlock", "CoordinateAttention", "DSBlock", "additive_angular_margin"]
