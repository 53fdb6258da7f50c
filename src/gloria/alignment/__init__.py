"""Alignment of words and image regions: two-stage attention, local scores, contrastive losses, similarities.

Submodules are imported on use (``gloria.alignment.local`` ...); importing this package does no work.
"""
