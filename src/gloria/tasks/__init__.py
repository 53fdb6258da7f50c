"""Downstream tasks on a GLoRIA model: zero-shot, retrieval, grounding, linear probe, segmentation.

Submodules are imported on use (``gloria.tasks.classifier`` ...); importing this package does no work.
"""
