"""Pictures of the evaluation: attention maps mapped back to original pixels (``maps``), plots (``plots``)."""
