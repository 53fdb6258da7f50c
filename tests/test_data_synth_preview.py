"""The SynthCXR example picture's box labels: names of nearby boxes do not print over each other."""

from __future__ import annotations

from itertools import pairwise

from gloria.data.synth.preview import label_spots


def test_a_label_that_would_overlap_moves_below_its_box() -> None:
    # case 8 of seed 0 at 128 px: the consolidation box sits in the heart's top-left corner
    boxes = [(46, 69, 49, 43), (45, 71, 14, 16)]
    spots = label_spots(boxes, ["cardiomegaly", "consolidation"], width=128)
    assert spots[0] == (46.0, 67.0)
    assert spots[1][1] > 71 + 16  # below the consolidation box, clear of the first label


def test_labels_far_apart_stay_above_their_boxes() -> None:
    spots = label_spots([(10, 20, 5, 5), (90, 20, 5, 5)], ["nodule", "opacity"], width=128)
    assert spots == [(10.0, 18.0), (90.0, 18.0)]


def test_no_two_labels_share_a_line_where_their_text_overlaps() -> None:
    boxes = [(40, 50, 30, 30)] * 4
    spots = label_spots(boxes, ["edema", "effusion", "opacity", "nodule"], width=128)
    ys = sorted(y for _, y in spots)
    assert all(b - a >= 0.034 * 128 - 1e-9 for a, b in pairwise(ys))
