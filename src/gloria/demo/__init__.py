"""The end-to-end demo (``gloria demo``): SynthCXR -> GLoRIA pretraining -> every task -> one report.

``settings`` holds the run sizes, ``run`` the state shared by the stages, ``stages`` the seven stages (their
bodies in ``training``, ``evaluate``, ``prompts``, ``figures``; the evaluations are ``gloria.tasks`` runners),
``pipeline`` runs them and writes the report, ``summary`` the headline table and the terminal summary,
``readings`` the plain-language reading under each table.
"""
