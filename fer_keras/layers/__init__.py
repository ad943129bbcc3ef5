"""Layers of the papers we reproduce."""

from fer_keras.layers.arcface import ArcFace, additive_angular_margin
from fer_keras.layers.car_block import CARBlock, DSBlock
from fer_keras.layers.coordinate_attention import CoordinateAttention
from fer_keras.layers.facial_area_fusion import FacialAreaFusion
from fer_keras.layers.feature_map_attention import FeatureMapSelfAttention
from fer_keras.layers.lbab import LBAB
from fer_keras.layers.local_binary import LBSL, LocalBinaryConv2D
from fer_keras.layers.local_feature import LocalFeatureExtractor
from fer_keras.layers.modulator import ChannelSpatialModulator
from fer_keras.layers.batch_normalization import BatchNormalization

__all__ = ["ArcFace", "BatchNormalization", "CARBlock", "ChannelSpatialModulator", "CoordinateAttention", "DSBlock", "FacialAreaFusion", "FeatureMapSelfAttention", "LBAB", "LBSL", "LocalBinaryConv2D", "LocalFeatureExtractor", "additive_angular_margin"]
