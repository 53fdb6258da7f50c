"""GLoRIA model (tiny preset): release API shapes, input preparation, losses, state-dict names, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gloria.data.images import read_image
from gloria.data.transforms import ImagePreprocessor
from gloria.model import GLoRIA, release_cap_lens

PROMPTS = ["Small left pleural effusion.", "[UNK] xyzqq opacity", "Pneumonia", "no pneumothorax"]


def write_images(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for name, shape in (("a.png", (90, 70)), ("b.jpg", (60, 100))):
        path = folder / name
        assert cv2.imwrite(str(path), rng.integers(0, 256, shape, dtype=np.uint8))
        paths.append(path)
    return paths


def test_state_dict_uses_release_names(tiny_model: GLoRIA) -> None:
    keys = set(tiny_model.state_dict())
    for key in (
        "img_encoder.model.conv1.weight",
        "img_encoder.model.layer3.0.conv1.weight",
        "img_encoder.global_embedder.weight",
        "img_encoder.global_embedder.bias",
        "img_encoder.local_embedder.weight",
        "text_encoder.model.embeddings.word_embeddings.weight",
        "text_encoder.model.encoder.layer.3.output.dense.weight",
        "text_encoder.model.pooler.dense.weight",
    ):
        assert key in keys
    assert "img_encoder.local_embedder.bias" not in keys
    assert not any(k.startswith("img_encoder.model.fc") or "position_ids" in k for k in keys)
    assert tiny_model.device == torch.device("cpu")
    assert tiny_model.img_encoder.local_embedder.weight.shape == (32, 256, 1, 1)


def test_process_img_files_and_arrays(tiny_model: GLoRIA, tmp_path: Path) -> None:
    paths = write_images(tmp_path)
    array = np.random.default_rng(1).integers(0, 256, (50, 40), dtype=np.uint8)
    imgs = tiny_model.process_img([paths[0], str(paths[1]), array], "cpu")
    assert imgs.shape == (3, 3, 64, 64)
    pre = ImagePreprocessor(tiny_model.config.transforms)
    torch.testing.assert_close(imgs[0], pre(read_image(paths[0])))
    torch.testing.assert_close(imgs[2], pre(array))
    assert tiny_model.process_img(str(paths[1]), "cpu").shape == (1, 3, 64, 64)
    assert tiny_model.process_img(array, None).shape == (1, 3, 64, 64)


def test_process_img_dicom(tiny_model: GLoRIA, tmp_path: Path) -> None:
    from support.dicom_files import write_dicom

    pixels = np.random.default_rng(2).integers(0, 4096, (70, 60)).astype(np.uint16)
    path = write_dicom(tmp_path / "chest.dcm", pixels, photometric="MONOCHROME1", bits_stored=12)
    imgs = tiny_model.process_img([path], "cpu")
    assert imgs.shape == (1, 3, 64, 64)
    torch.testing.assert_close(imgs[0], ImagePreprocessor(tiny_model.config.transforms)(read_image(path)))


def test_process_img_errors_name_the_file(tiny_model: GLoRIA, tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        tiny_model.process_img([missing], "cpu")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"corrupt\.jpg"):
        tiny_model.process_img(str(corrupt), "cpu")
    with pytest.raises(ValueError, match="empty list"):
        tiny_model.process_img([], "cpu")
    with pytest.raises(ValueError, match="image 1"):
        tiny_model.process_img([np.zeros((8, 8), np.uint8), 3], "cpu")  # type: ignore[list-item]


def test_process_text(tiny_model: GLoRIA, caplog: pytest.LogCaptureFixture) -> None:
    out = tiny_model.process_text(PROMPTS, "cpu")
    K, T = len(PROMPTS), tiny_model.config.text.max_length
    for key in ("caption_ids", "attention_mask", "token_type_ids"):
        assert out[key].shape == (K, T) and out[key].dtype == torch.long
    assert out["cap_lens"] == [len(p) - p.count("[") for p in PROMPTS] == [28, 18, 9, 15]
    assert out["texts"] == [
        "small left pleural effusion",
        "unk xyzqq opacity",
        "pneumonia",
        "no pneumothorax",
    ]
    assert out["word_counts"].tolist() == [4, 3, 1, 2]
    # the release's cleaning drops one-word prompts (with a warning)
    with caplog.at_level(logging.WARNING):
        legacy = tiny_model.process_text("Pneumonia", "cpu", keep_short=False)
    assert legacy["texts"] == [""] and legacy["word_counts"].tolist() == [0]
    assert "empty after cleaning" in caplog.text
    with pytest.raises(ValueError, match="empty list"):
        tiny_model.process_text([], "cpu")
    with pytest.raises(ValueError, match="text 1"):
        tiny_model.process_text(["ok", 5], "cpu")  # type: ignore[list-item]
    assert release_cap_lens(["[a]b"]) == [3]


def test_process_class_prompts(tiny_model: GLoRIA) -> None:
    out = tiny_model.process_class_prompts(
        {"Edema": ["mild edema", "edema"], "Atelectasis": "atelectasis"}, "cpu"
    )
    assert list(out) == ["Edema", "Atelectasis"]
    assert out["Edema"]["caption_ids"].shape == (2, 32)
    assert out["Atelectasis"]["caption_ids"].shape == (1, 32)
    with pytest.raises(ValueError, match="no classes"):
        tiny_model.process_class_prompts({}, "cpu")


def test_release_forward_and_loss(tiny_model: GLoRIA) -> None:
    imgs = torch.randn(len(PROMPTS), 3, 64, 64)
    text = tiny_model.process_text(PROMPTS, "cpu")
    batch = {"imgs": imgs, **text}
    img_l, img_g, txt_l, txt_g, sents = tiny_model(batch)
    assert img_l.shape == (4, 32, 4, 4) and img_g.shape == (4, 32)
    assert txt_l.shape == (4, 32, 32) and txt_g.shape == (4, 32)
    assert len(sents) == 4 and all(len(s) == 32 for s in sents)
    assert sents[1][:5] == ["[CLS]", "unk", "xyzqq", "opacity", "[SEP]"]
    # release entry points agree with the typed ones
    regions, embedding = tiny_model.image_encoder_forward(imgs)
    torch.testing.assert_close(regions, tiny_model.encode_images(imgs).regions)
    torch.testing.assert_close(embedding, img_g)
    words, text_emb, strings = tiny_model.text_encoder_forward(
        text["caption_ids"], text["attention_mask"], text["token_type_ids"]
    )
    feats = tiny_model.encode_texts(text)
    torch.testing.assert_close(words, feats.words)
    torch.testing.assert_close(text_emb, txt_g)
    assert strings == feats.word_strings == sents

    loss, attn_maps = tiny_model.calc_loss(img_l, img_g, txt_l, txt_g, sents)
    losses = tiny_model.compute_losses(tiny_model.encode_images(imgs), feats, legacy_word_counts=True)
    torch.testing.assert_close(loss, losses["loss"])
    assert torch.isfinite(loss) and loss.ndim == 0
    assert feats.legacy_word_counts.tolist() == [4, 3, 1, 2]
    assert [tuple(m.shape) for m in attn_maps] == [(1, n + 1, 4, 4) for n in [4, 3, 1, 2]]
    for m in attn_maps:
        torch.testing.assert_close(m.sum(dim=(2, 3)), torch.ones(m.shape[:2]))
    default = tiny_model.compute_losses(tiny_model.encode_images(imgs), feats)
    assert set(default) >= {"loss", "global_loss", "local_loss"}
    torch.testing.assert_close(default["global_loss"], losses["global_loss"])
    default["loss"].backward()
    assert tiny_model.img_encoder.local_embedder.weight.grad is not None
    assert tiny_model.text_encoder.model.encoder.layer[-1].output.dense.weight.grad is not None


def test_legacy_counts_skip_unk_words(tiny_model: GLoRIA) -> None:
    feats = tiny_model.encode_texts(tiny_model.process_text(PROMPTS, "cpu"))
    # "unk" after cleaning is a plain word; an [UNK] token only appears for out-of-vocabulary characters
    ids = tiny_model.text_encoder.tokenizer(["opacity ☃ effusion"], return_tensors="pt")
    assert "[UNK]" in tiny_model.text_encoder.tokenizer.convert_ids_to_tokens(ids["input_ids"][0])
    unk = tiny_model.text_encoder(ids["input_ids"], ids["attention_mask"], ids["token_type_ids"])
    assert unk.word_mask.sum().item() == 4  # CLS + 3 words
    assert unk.legacy_word_counts.tolist() == [2]
    assert feats.word_mask.sum(dim=1).tolist() == [5, 4, 2, 3]


def test_wrong_inputs_raise(tiny_model: GLoRIA) -> None:
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        tiny_model.encode_images(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="attention_mask"):
        tiny_model.encode_texts({"caption_ids": torch.zeros(2, 8, dtype=torch.long)})
    with pytest.raises(ValueError, match="imgs"):
        tiny_model({"caption_ids": torch.zeros(2, 8, dtype=torch.long)})
    with pytest.raises(ValueError, match="sents has 1 texts"):
        tiny_model.calc_loss(
            torch.zeros(2, 32, 4, 4), torch.zeros(2, 32), torch.zeros(2, 32, 8), torch.zeros(2, 32), [[]]
        )


def test_local_feature_scale_feeds_the_word_softmax_scaled_cosines(tiny_config) -> None:
    """``alignment.local_feature_scale`` s: inside ``gloria.alignment`` regions and words become unit vectors
    times sqrt(s) (padding slots stay zero), so region . word = s x cosine; the encoders' outputs are the
    model's own (no hidden step), and the losses and similarities apply the scale themselves."""
    from dataclasses import replace

    from gloria.alignment.attention import scaled_local_features, two_stage_attention
    from gloria.alignment.similarity import default_local_similarity
    from gloria.types import ImageFeatures

    torch.manual_seed(0)
    raw = GLoRIA(tiny_config).eval()
    scaled = GLoRIA(tiny_config.replace(alignment__local_feature_scale=9.0)).eval()
    scaled.load_state_dict(raw.state_dict())
    images = torch.randn(2, 3, 64, 64)
    tokens = raw.process_text(["small left pleural effusion", "heart size is enlarged with edema"], "cpu")
    with torch.no_grad():
        a_img, b_img = raw.encode_images(images), scaled.encode_images(images)
        a_txt, b_txt = raw.encode_texts(tokens), scaled.encode_texts(tokens)
    for a, b in ((a_img.regions, b_img.regions), (a_img.embedding, b_img.embedding)):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    torch.testing.assert_close(b_txt.words, a_txt.words, rtol=0, atol=0)
    regions = scaled_local_features(a_img.regions, 9.0)
    words = scaled_local_features(a_txt.words, 9.0)
    torch.testing.assert_close(regions.norm(dim=1), torch.full((2, 4, 4), 3.0))
    norms = words.norm(dim=1)
    torch.testing.assert_close(norms[a_txt.word_mask], torch.full_like(norms[a_txt.word_mask], 3.0))
    zero = a_txt.words.norm(dim=1) == 0
    assert bool(zero.any()) and bool((norms[zero] == 0).all())  # zero (padding) slots stay zero
    torch.testing.assert_close(scaled_local_features(regions, 9.0), regions)  # idempotent
    cos = torch.nn.functional.cosine_similarity(
        a_img.regions.flatten(2)[0].unsqueeze(2), a_txt.words[0].unsqueeze(1), dim=0
    )  # [R, T]
    dots = torch.einsum("dr,dt->rt", regions.flatten(2)[0], words[0])
    keep = a_txt.word_mask[0]
    torch.testing.assert_close(dots[:, keep], 9.0 * cos[:, keep])
    _, attention = two_stage_attention(words, regions, a_txt.word_mask, 4.0)
    assert torch.isfinite(attention).all()
    # the scaled model's loss and similarity = the release maths on the scaled features
    pre_img = ImageFeatures(regions=regions, embedding=a_img.embedding)
    pre_txt = replace(a_txt, words=words)
    ours, ref = scaled.compute_losses(a_img, a_txt), raw.compute_losses(pre_img, pre_txt)
    for key in ("loss", "local_loss", "global_loss"):
        torch.testing.assert_close(ours[key], ref[key])
    assert not torch.allclose(ours["local_loss"], raw.compute_losses(a_img, a_txt)["local_loss"])
    torch.testing.assert_close(
        default_local_similarity(a_img.regions, a_txt.words, a_txt.word_mask, scaled.alignment),
        default_local_similarity(regions, words, a_txt.word_mask, raw.alignment),
    )
    with pytest.raises(ValueError, match="local_feature_scale must be > 0"):
        tiny_config.replace(alignment__local_feature_scale=0.0)
