"""``gloria prepare`` for the benchmark data sets, on fixtures in the real formats and, where torchxrayvision
ships the real metadata, on the real files read in place: counts, no patient in two splits, boxes in range."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gloria.data import nih, padchest, rsna, siim, vindr
from gloria.data.phrase_boxes import boxes_in_range, read_phrase_boxes
from gloria.data.prepare import Prepared
from gloria.data.prepare_benchmarks import rsna_box_table, siim_mask_table
from gloria.data.rle import rle_decode
from support.dataset_fixtures import CHEXPERT_HEADER, chexpert_row, real_metadata, write_rsna, write_siim
from support.eval_cli import run_command

NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)


def one_patient_per_split(frame: pd.DataFrame, patient: str) -> bool:
    return bool(frame.groupby(patient)["split"].nunique().max() == 1)


def write_nih(root: Path, *, official: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [NIH_HEADER]
    labels = ["Cardiomegaly", "Cardiomegaly|Emphysema", "No Finding", "Effusion|Infiltration", "Nodule"]
    for i in range(10):
        lines.append(
            f"{i // 2 + 1:08d}_{i % 2:03d}.png,{labels[i % 5]},{i % 2},{i // 2 + 1},57,M,PA,"
            "2682,2749,0.143,0.143"
        )
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join(lines) + "\n")
    (root / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "00000001_000.png,Cardiomegaly,225.08,547.02,86.78,79.19,,,\n"
        "00000002_001.png,Infiltrate,686.1,131.5,185.5,313.5,,,\n"
    )
    if official:
        (root / "train_val_list.txt").write_text(
            "".join(f"{i // 2 + 1:08d}_{i % 2:03d}.png\n" for i in range(8))
        )
        (root / "test_list.txt").write_text("00000005_000.png\n00000005_001.png\n")
    return root


def test_nih_prepare_official_lists_and_boxes(tmp_path: Path) -> None:
    root = write_nih(tmp_path / "nih", official=True)
    argv = ["prepare", "nih", "--root", str(root), "--allow-missing-images"]
    assert run_command("prepare", argv) == 0
    frames = {
        s: pd.read_csv(root / f"nih_{s}.csv")
        for s in ("train", "valid", "test")
        if (root / f"nih_{s}.csv").is_file()
    }
    assert sorted(frames["test"]["Image Index"]) == ["00000005_000.png", "00000005_001.png"]
    allrows = pd.concat(frames.values())
    assert len(allrows) == 10 and one_patient_per_split(allrows, "Patient ID")
    row = allrows.set_index("Image Index").loc["00000001_001.png"]
    assert row["Cardiomegaly"] == 1 and row["Emphysema"] == 1 and row["No Finding"] == 0
    summary = json.loads((root / "nih_summary.json").read_text())
    assert summary["split_mode"] == "official" and summary["missing_images"] == 10
    boxes = read_phrase_boxes(root / "nih_boxes.csv")
    assert (
        boxes["label_text"].tolist() == ["cardiomegaly", "infiltrate"] and boxes["image_width"].eq(1024).all()
    )
    manifest = json.loads((root / "nih_boxes_manifest.json").read_text())
    assert (
        manifest["boxes"] == 2 and manifest["boxes_in_range"] is True and len(manifest["file_sha256"]) == 64
    )
    (root / "test_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="--split official needs"):
        run_command("prepare", [*argv, "--split", "official"])
    bad = root / "Data_Entry_2017_v2020.csv"
    bad.write_text(bad.read_text().replace("Nodule", "Nodules", 1))
    with pytest.raises(ValueError, match=r"row 6: unknown finding\(s\) \['Nodules'\]"):
        nih.read_entries(bad)


def test_nih_real_metadata_counts() -> None:
    entries = nih.read_entries(real_metadata("Data_Entry_2017_v2020.csv.gz"))
    assert len(entries) == 112120 and entries["Image Index"].is_unique
    entries["split"] = nih.patient_split(entries, seed=0)
    assert entries["split"].notna().all() and one_patient_per_split(entries, "Patient ID")
    assert set(entries["split"]) == {"train", "valid", "test"}
    boxes = nih.read_boxes(real_metadata("BBox_List_2017.csv.gz"), entries)
    assert len(boxes) == 984 and boxes["category"].nunique() == 8 and boxes_in_range(boxes)
    assert boxes["patient_id"].notna().all()  # every boxed image is an entry


def test_vindr_fixture_and_real_metadata(tmp_path: Path) -> None:
    text = (
        "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n"
        "aa,No finding,14,R11,,,,\n"
        "bb,Cardiomegaly,3,R10,691.0,1375.0,1653.0,1831.0\n"
        "bb,Cardiomegaly,3,R9,700.0,1380.0,1640.0,1820.0\n"
        "bb,Nodule/Mass,8,R9,10.0,20.0,30.0,40.0\n"
    )
    (tmp_path / "train.csv").write_text(text)
    frame = vindr.read_vindr(tmp_path / "train.csv")
    boxes = vindr.box_table(frame, {"bb": (2000, 1800)})
    assert boxes["rad_id"].tolist() == ["R10", "R9", "R9"] and boxes["w"].tolist() == [962.0, 940.0, 20.0]
    assert boxes_in_range(boxes)
    labels = vindr.image_labels(frame)
    assert labels.set_index("image_id").loc["bb"].to_dict() == {"Cardiomegaly": 1, "Nodule/Mass": 1}
    assert labels.set_index("image_id").loc["aa"].sum() == 0
    (tmp_path / "train.csv").write_text(text.replace("10.0,20.0,30.0", "40.0,20.0,30.0"))
    with pytest.raises(ValueError, match=r"row 5: box \[40.0, 20.0, 30.0, 40.0\] is not a valid box"):
        vindr.read_vindr(tmp_path / "train.csv")
    real = vindr.read_vindr(real_metadata("vinbigdata-train.csv.gz"))
    assert len(real) == 67914 and real["image_id"].nunique() == 15000 and real["rad_id"].nunique() == 17
    real_boxes = vindr.box_table(real)
    assert len(real_boxes) == 36096 and (real_boxes["w"] > 0).all() and (real_boxes["h"] > 0).all()
    assert len(vindr.image_labels(real)) == 15000


def test_padchest_fixture_and_real_metadata(tmp_path: Path) -> None:
    header = ",ImageID,ImageDir,StudyDate_DICOM,StudyID,PatientID,Projection,Labels"
    rows = [
        "0,a.png,0,20140915,s1,p1,PA,['normal']",
        "1,b.png,0,20140915,s2,p1,L,\"['pulmonary fibrosis', 'kyphosis']\"",
        "2,c.png,3,20140915,s3,p2,PA,\"['kyphosis', ' normal']\"",
        "3,d.png,3,20140915,s4,p3,PA,",
    ]
    (tmp_path / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    frame, labels = padchest.read_padchest(tmp_path / "labels.csv", min_count=2)
    assert labels == ["kyphosis", "normal"] and frame.attrs["dropped_unlabelled"] == 1
    assert frame[["kyphosis", "normal"]].to_numpy().tolist() == [[0, 1], [1, 0], [1, 1]]
    argv = ["prepare", "padchest", "--root", str(tmp_path), "--csv", str(tmp_path / "labels.csv")]
    assert run_command("prepare", [*argv, "--min-count", "2", "--allow-missing-images"]) == 0
    summary = json.loads((tmp_path / "padchest_summary.json").read_text())
    assert summary["dropped"] == {"no_labels": 1} and sum(s["rows"] for s in summary["splits"].values()) == 3
    real, real_labels = padchest.read_padchest(
        real_metadata("PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"), min_count=50
    )
    assert len(real) + real.attrs["dropped_unlabelled"] == 160861 and real.attrs["dropped_unlabelled"] == 103
    assert "normal" in real_labels and real["normal"].sum() > 30000
    from gloria.data.splits import DEFAULT_FRACTIONS, assign_patient_splits

    real["split"] = assign_patient_splits(real, "PatientID", DEFAULT_FRACTIONS, seed=0)
    assert one_patient_per_split(real, "PatientID")


def test_rsna_and_siim_grounding_tables(tmp_path: Path) -> None:
    root = write_rsna(tmp_path / "rsna", 9)
    assert run_command("prepare", ["prepare", "rsna", "--root", str(root)]) == 0
    boxes = read_phrase_boxes(root / "rsna_boxes.csv")
    labels = pd.read_csv(root / "stage_2_train_labels.csv")
    assert len(boxes) == int((labels["Target"] == 1).sum()) and boxes_in_range(boxes)
    assert boxes["image_width"].eq(64).all()  # from the DICOM headers
    mask = np.zeros((32, 32), np.uint8)
    mask[3:7, 4:9] = 1
    from gloria.data.rle import rle_encode

    sroot = write_siim(tmp_path / "siim", [[rle_encode(mask)], [], [rle_encode(mask.T)]])
    assert run_command("prepare", ["prepare", "siim", "--root", str(sroot), "--no-balance"]) == 0
    masks = read_phrase_boxes(sroot / "siim_masks.csv")
    assert len(masks) == 2 and masks["image_width"].eq(32).all()
    np.testing.assert_array_equal(rle_decode(masks["mask_rle"].iloc[0], 32, 32), mask)


def test_rsna_and_siim_real_metadata_tables() -> None:
    frame = rsna.group_by_patient(rsna.read_rsna_labels(real_metadata("kaggle_stage_2_train_labels.csv.zip")))
    frame = frame.assign(path="/absent.dcm", split=rsna.patient_split(frame, seed=0))
    boxes = rsna_box_table(Prepared("rsna", frame, "patientId"))
    assert len(boxes) == 9555 and boxes["dicom_id"].nunique() == 6012 and boxes_in_range(boxes)
    assert one_patient_per_split(boxes.rename(columns={"dicom_id": "pid"}), "pid")
    images = siim.group_by_image(siim.read_siim_rle(real_metadata("siim-pneumothorax-train-rle.csv.gz")))
    images = images.assign(path="/absent.dcm", split="train", height=1024, width=1024)
    masks = siim_mask_table(Prepared("siim", images, "ImageId"))
    assert len(masks) == 3576 and masks["dicom_id"].nunique() == int(images["positive"].sum())
    assert rle_decode(masks["mask_rle"].iloc[0], 1024, 1024).any()


def test_chexpert_test_and_ms_cxr(tmp_path: Path) -> None:
    root = tmp_path / "CheXpert-v1.0"
    root.mkdir()
    labels = ",".join(CHEXPERT_HEADER[5:])
    test_rows = [f"test/patient64741/study1/view1_frontal.jpg,{','.join(['0'] * 13)},1",
                 f"test/patient64742/study1/view1_frontal.jpg,{','.join(['1'] * 14)}"]  # fmt: skip
    (root / "test_labels.csv").write_text(f"Path,{labels}\n" + "\n".join(test_rows) + "\n")
    pd.DataFrame([chexpert_row(64541, 1, 1, split="valid")], columns=CHEXPERT_HEADER).to_csv(
        root / "valid.csv", index=False
    )
    assert (
        run_command("prepare", ["prepare", "chexpert-test", "--root", str(root), "--allow-missing-images"])
        == 0
    )
    test = pd.read_csv(root / "chexpert_test_test.csv")
    assert test["path"].tolist() == [str(root / r.split(",")[0]) for r in test_rows]
    assert test["Support Devices"].tolist() == [1, 1] and test["Edema"].tolist() == [0, 1]
    valid = pd.read_csv(root / "chexpert_test_valid.csv")
    assert valid["path"].iloc[0] == str(root / "valid/patient64541/study1/view1_frontal.jpg")
    mimic = tmp_path / "mimic"
    mimic.mkdir()
    (mimic / "MS_CXR_Local_Alignment_v1.0.0.csv").write_text(
        "dicom_id,category,label_text,path,x,y,w,h,image_width,image_height\n"
        "d1,Pneumonia,right lower lobe pneumonia,files/p10/p10000032/s50414267/d1.jpg,"
        "100,200,300,250,2544,3056\n"
    )
    with pytest.raises(FileNotFoundError, match="1 MS-CXR images are missing"):
        run_command("prepare", ["prepare", "mscxr", "--root", str(mimic)])
    assert run_command("prepare", ["prepare", "mscxr", "--root", str(mimic), "--allow-missing-images"]) == 0
    ms = read_phrase_boxes(mimic / "ms_cxr.csv")
    assert ms["path"].iloc[0] == str(mimic / "files/p10/p10000032/s50414267/d1.jpg")
