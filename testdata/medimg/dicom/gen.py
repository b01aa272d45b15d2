#!/usr/bin/python3
"""Generate the synthetic DICOM test series of segsam's medimg/dicom package.

Run from this directory with Debian's python3-pydicom and python3-numpy:

    /usr/bin/python3 gen.py

Every series is written with shuffled file names and instance numbers that
do not follow the slice order, so that the reader must order slices by
ImagePositionPatient. For each readable series, <series>.npy holds the
expected rescaled voxels in C order [slice][row][column] (slices sorted by
position along the slice normal) and expected.json the expected RAS+ affine,
both computed here from the geometry the files were written with.
"""
import json
import os
import shutil

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                         RLELossless, generate_uid)

rng = np.random.default_rng(5)
expected = {}


def write_series(name, *, n, rows, cols, iop, origin, step, spacing, ts, modality,
                 bits=16, stored=12, signed=True, slope=1.0, intercept=0.0,
                 with_sequence=False, drop=None, series_uid=None, subdir=None):
    d = subdir or name
    os.makedirs(d, exist_ok=True)
    series_uid = series_uid or generate_uid()
    row_dir = np.array(iop[:3], float)
    col_dir = np.array(iop[3:], float)
    lo, hi = (-(1 << (stored - 1)), (1 << (stored - 1)) - 1) if signed else (0, (1 << stored) - 1)
    stored_vals = rng.integers(lo, hi + 1, size=(n, rows, cols))
    dtype = {8: np.uint8, 16: np.int16 if signed else np.uint16}[bits]
    order = rng.permutation(n)
    files = []
    for k in range(n):
        if drop is not None and k == drop:
            continue
        pos = np.array(origin, float) + k * np.array(step, float)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ts
        fname = f"IM{order[k]:04d}_{rng.integers(1 << 30):x}" + (".dcm" if k % 2 else "")
        ds = FileDataset(fname, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.is_little_endian = ts != ExplicitVRBigEndian
        ds.is_implicit_VR = ts == ImplicitVRLittleEndian
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.SeriesDescription = name
        ds.PatientName = "Synthetic^Phantom"
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = int(n - k)  # reversed on purpose
        ds.ImagePositionPatient = [f"{x:.4f}" for x in pos]
        ds.ImageOrientationPatient = [f"{x:.6f}" for x in iop]
        ds.PixelSpacing = [spacing[0], spacing[1]]  # row spacing, column spacing
        ds.SliceThickness = float(np.linalg.norm(step))
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = bits
        ds.BitsStored = stored
        ds.HighBit = stored - 1
        ds.PixelRepresentation = 1 if signed else 0
        if slope != 1.0 or intercept != 0.0:
            ds.RescaleSlope = f"{slope:g}"
            ds.RescaleIntercept = f"{intercept:g}"
        if with_sequence:
            item = Dataset()
            item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            item.ReferencedSOPInstanceUID = generate_uid()
            seq = Sequence([item])
            seq.is_undefined_length = True
            item.is_undefined_length_sequence_item = True
            ds.ReferencedImageSequence = seq
            ds["ReferencedImageSequence"].is_undefined_length = True
        ds.PixelData = stored_vals[k].astype(dtype).tobytes() if ds.is_little_endian else stored_vals[k].astype(np.dtype(dtype).newbyteorder(">")).tobytes()
        if ts == RLELossless:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.is_implicit_VR = False
            ds.compress(RLELossless, stored_vals[k].astype(dtype))
        ds.save_as(os.path.join(d, fname), write_like_original=False)
        files.append(fname)
    # Expected values and geometry (slices in position order).
    normal = np.cross(row_dir, col_dir)
    ks = [k for k in range(n) if k != drop]
    ks.sort(key=lambda k: float(np.dot(np.array(origin) + k * np.array(step), normal)))
    vals = np.stack([stored_vals[k] * slope + intercept for k in ks]).astype(np.float32)
    first = np.array(origin, float) + ks[0] * np.array(step, float)
    last = np.array(origin, float) + ks[-1] * np.array(step, float)
    kvec = (last - first) / (len(ks) - 1)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing[1]
    lps[:3, 1] = col_dir * spacing[0]
    lps[:3, 2] = kvec
    lps[:3, 3] = first
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    return vals, ras


def keep(name, vals, ras, modality):
    np.save(f"{name}.npy", vals)
    expected[name] = {"affine": ras.tolist(), "modality": modality, "shape": list(vals.shape)}


for d in ["explicit", "implicit", "bigendian", "compressed", "mixed", "uneven"]:
    shutil.rmtree(d, ignore_errors=True)

# Axial CT, explicit VR LE, signed 12-bit in 16, slope 2, intercept -1024,
# slices written with a negative step (superior first), a sequence of
# undefined length before the pixel data.
vals, ras = write_series("explicit", n=6, rows=10, cols=12, iop=[1, 0, 0, 0, 1, 0],
                         origin=[-20.0, -15.0, 30.0], step=[0, 0, -2.5], spacing=[0.8, 0.7],
                         ts=ExplicitVRLittleEndian, modality="CT", slope=2, intercept=-1024,
                         with_sequence=True)
keep("explicit", vals, ras, "CT")
# Coronal MR, implicit VR LE, unsigned 16-bit, no rescale.
vals, ras = write_series("implicit", n=5, rows=8, cols=9, iop=[1, 0, 0, 0, 0, -1],
                         origin=[-10.0, 40.0, 25.0], step=[0, -3.0, 0], spacing=[1.2, 0.9],
                         ts=ImplicitVRLittleEndian, modality="MR", stored=16, signed=False,
                         with_sequence=True)
keep("implicit", vals, ras, "MR")
# Oblique PET, explicit VR big endian, 8-bit, slope 0.05.
c, s = np.cos(0.2), np.sin(0.2)
vals, ras = write_series("bigendian", n=4, rows=6, cols=7, iop=[c, s, 0, -s, c, 0],
                         origin=[5.0, 5.0, -40.0], step=[0, 0, 4.0], spacing=[4.0, 4.0],
                         ts=ExplicitVRBigEndian, modality="PT", bits=8, stored=8, signed=False,
                         slope=0.05, intercept=0)
keep("bigendian", vals, ras, "PET")
# RLE-compressed series: rejected (or converted by dcm2niix).
vals, ras = write_series("compressed", n=3, rows=8, cols=8, iop=[1, 0, 0, 0, 1, 0], origin=[0, 0, 0],
                         step=[0, 0, 2.0], spacing=[1, 1], ts=RLELossless, modality="CT", stored=16, signed=False)
keep("compressed", vals, ras, "CT")
# Two series in one directory.
write_series("mixedA", n=3, rows=4, cols=4, iop=[1, 0, 0, 0, 1, 0], origin=[0, 0, 0],
             step=[0, 0, 2.0], spacing=[1, 1], ts=ExplicitVRLittleEndian, modality="CT", subdir="mixed")
write_series("mixedB", n=2, rows=4, cols=4, iop=[1, 0, 0, 0, 1, 0], origin=[0, 0, 0],
             step=[0, 0, 2.0], spacing=[1, 1], ts=ExplicitVRLittleEndian, modality="CT", subdir="mixed")
# A missing slice: uneven spacing.
write_series("uneven", n=5, rows=4, cols=4, iop=[1, 0, 0, 0, 1, 0], origin=[0, 0, 0],
             step=[0, 0, 2.0], spacing=[1, 1], ts=ExplicitVRLittleEndian, modality="CT", drop=2)
with open(os.path.join("mixed", "README.txt"), "w") as f:
    f.write("not a DICOM file: must be skipped\n")

json.dump(expected, open("expected.json", "w"), indent=1)
print("ok")
