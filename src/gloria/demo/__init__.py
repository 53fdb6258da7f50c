"""The end-to-end demo (``gloria demo``): SynthCXR -> GLoRIA pretraining -> every task -> one report.

``settings`` holds the run sizes, ``pipeline`` runs the stages, ``summary`` writes the report and the terminal
summary; the stage bodies live in ``pretrain``, ``evaluate``, ``probe`` and ``figures``.
"""
