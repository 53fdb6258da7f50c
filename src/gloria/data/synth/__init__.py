"""SynthCXR: the embedded synthetic chest X-ray data set (images, reports, labels, ground truth).

``generate(out, n, seed, config)`` writes it in the real data sets' formats; ``make_case`` gives one case.
"""

from __future__ import annotations

from gloria.data.synth.case import Case, make_case
from gloria.data.synth.config import SynthConfig
from gloria.data.synth.generate import SynthSummary, generate

__all__ = ["Case", "SynthConfig", "SynthSummary", "generate", "make_case"]
