"""SynthCXR DICOM output: valid uncompressed CR files (pydicom) at 8, 12 or 16 bits, MONOCHROME1 or 2.

Every UID comes from the caller (derived from seed and index) and no date or time is written, so files are
byte-identical across runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def to_stored(
    image: npt.NDArray[np.uint8], bits_stored: int, photometric: str
) -> npt.NDArray[np.uint16] | npt.NDArray[np.uint8]:
    """Scale 8-bit display pixels (bright = dense) to the stored range; MONOCHROME1 stores them inverted."""
    if bits_stored not in (8, 12, 16):
        raise ValueError(f"to_stored: bits_stored must be 8, 12 or 16, got {bits_stored}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"to_stored: photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    top = (1 << bits_stored) - 1
    if bits_stored == 8:
        stored8 = image.copy()
        return (top - stored8).astype(np.uint8) if photometric == "MONOCHROME1" else stored8
    stored = np.round(image.astype(np.float64) * (top / 255.0)).astype(np.uint16)
    if photometric == "MONOCHROME1":
        stored = (top - stored).astype(np.uint16)
    return stored


def write_dicom(
    path: Path,
    image: npt.NDArray[np.uint8],
    *,
    sop_uid: str,
    study_uid: str,
    series_uid: str,
    patient_id: str,
    sex: str,
    age: int,
    view: str,
    bits_stored: int = 8,
    photometric: str = "MONOCHROME2",
) -> None:
    """Write ``image`` [H, W] uint8 as an Explicit VR Little Endian CR DICOM with a full-range window."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"write_dicom: expected uint8 [H, W], got {image.dtype} {image.shape}")
    stored = to_stored(image, bits_stored, photometric)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(CR_IMAGE_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(prefix="1.2.826.0.1.3680043.8.498.", entropy_srcs=["synthcxr"])
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "CR"
    ds.ConversionType = "WSD"
    ds.PatientID = patient_id
    ds.PatientName = patient_id
    ds.PatientSex = "F" if sex.lower().startswith("f") else "M"
    ds.PatientAge = f"{age:03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(image.shape[0]), int(image.shape[1])
    ds.PixelSpacing = [0.143 * 2048 / image.shape[0]] * 2
    ds.BitsAllocated = 8 if bits_stored == 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    top = (1 << bits_stored) - 1
    ds.WindowCenter = (top + 1) // 2
    ds.WindowWidth = top + 1
    if bits_stored > 8:
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
