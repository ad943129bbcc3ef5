"""Losses of the papers we reproduce."""

from fer_keras.losses.arcface import ArcFaceLoss, ArcFaceMarginLoss, arcface_loss
from fer_keras.losses.center import CenterLoss
from fer_keras.losses.crossentropy import CrossEntropy, crossentropy
from fer_keras.losses.island import IslandLoss, IsletsLoss
from fer_keras.losses.label_distribution import LabelDistribution, LabelDistributionLoss, label_distribution_loss

__all__ = ["ArcFaceLoss", "ArcFaceMarginLoss", "CenterLoss", "CrossEntropy", "IslandLoss", "IsletsLoss", "LabelDistribution", "LabelDistributionLoss", "arcface_loss", "crossentropy", "label_distribution_loss"]
