"""Losses of the papers we reproduce."""

from fer_keras.losses.arcface import ArcFaceLoss, arcface_loss

__all__ = ["ArcFaceLoss", "arcface_loss"]
