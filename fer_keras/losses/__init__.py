"""Losses of the papers we reproduce."""

from fer_keras.losses.arcface import ArcFaceLoss, arcface_loss
from fer_keras.losses.center import CenterLoss
from fer_keras.losses.crossentropy import CrossEntropy, crossentropy

__all__ = ["ArcFaceLoss", "CenterLoss", "CrossEntropy", "arcface_loss", "crossentropy"]
