"""The two towers of GLoRIA: image (torchvision trunk) and text (BERT with word-piece aggregation)."""

from gloria.encoders.image import ImageEncoder, InputResize
from gloria.encoders.text import TextEncoder
from gloria.encoders.wordpieces import AggregatedWords, WordPieceAggregator

__all__ = ["AggregatedWords", "ImageEncoder", "InputResize", "TextEncoder", "WordPieceAggregator"]
