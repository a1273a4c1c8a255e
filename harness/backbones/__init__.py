"""Backbones: the common interface (``base``) and the builders of each library family."""

from .base import Backbone, BackboneSpec, Tokens

__all__ = ["Backbone", "BackboneSpec", "Tokens"]
