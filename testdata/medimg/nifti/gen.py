#!/usr/bin/python3
"""Generate the NIfTI test files of segsam's medimg packages.

Run from this directory with Debian's python3-nibabel and python3-numpy:

    /usr/bin/python3 gen.py /path/to/shared/data/volumes

It copies two small volumes byte for byte, crops and subsamples the
TotalSegmentator example CT and its label map, writes synthetic volumes in
several datatypes, byte orders, versions and orientations, and records the
values nibabel reads (golden.json, *.npy) so that the Go reader is checked
against an independent implementation.
"""
import json
import os
import shutil
import sys

import nibabel as nib
import numpy as np

src = sys.argv[1]
golden = {"files": {}}


def record(name, slices=()):
    """Store what nibabel reads from name in golden.json, plus canonical
    (LPS) slices as .npy for the given (axis, index) pairs."""
    img = nib.load(name)
    data = np.asanyarray(img.dataobj).astype(np.float64)  # scaled values
    hdr = img.header
    rng = np.random.default_rng(len(name))
    picks = [tuple(int(rng.integers(0, s)) for s in data.shape[:3]) for _ in range(12)]
    picks.append((0, 0, 0))
    picks.append(tuple(s - 1 for s in data.shape[:3]))
    golden["files"][name] = {
        "version": 2 if isinstance(img, nib.Nifti2Image) else 1,
        "shape": [int(s) for s in data.shape],
        "datatype": int(hdr["datatype"]),
        "affine": img.affine.tolist(),
        "qform_code": int(hdr["qform_code"]),
        "sform_code": int(hdr["sform_code"]),
        "axcodes": "".join(nib.aff2axcodes(img.affine)),
        "sum": float(data.sum()),
        "voxels": [[i, j, k, float(data[i, j, k])] for i, j, k in picks],
        # numpy's default (linear) percentiles of the float32 values.
        "p0.5_99.5": [float(x) for x in np.percentile(data.astype(np.float32), [0.5, 99.5])],
    }
    if slices:
        ras = np.asanyarray(nib.as_closest_canonical(img).dataobj).astype(np.float32)
        lps = ras[::-1, ::-1, :]
        for axis, idx in slices:
            if axis == "axial":
                im = lps[:, :, idx].T
            elif axis == "coronal":
                im = lps[:, idx, ::-1].T
            else:
                im = lps[idx, :, ::-1].T
            np.save(f"{name.split('.')[0]}_{axis}_{idx}.npy", np.ascontiguousarray(im, dtype=np.float32))


# 1. Byte-for-byte copies (PET: float32, qform only, LPS-style axes).
for f in ["sts019_pet.nii.gz", "sts019_pet_label.nii.gz"]:
    shutil.copyfile(os.path.join(src, f), f)
record("sts019_pet.nii.gz", [("axial", 20), ("coronal", 14), ("sagittal", 9)])
record("sts019_pet_label.nii.gz")

# 2. Cropped and subsampled CT (int16, RAS-style axes): 6 x 6 x 3 mm voxels.
ct = nib.load(os.path.join(src, "totalseg_example_ct.nii.gz"))
lab = nib.load(os.path.join(src, "totalseg_example_ct_label.nii.gz"))
box = (slice(10, 110, 2), slice(5, 95, 2), slice(None))
ct_c = ct.slicer[box]
lab_c = lab.slicer[box]
ct_c = nib.Nifti1Image(np.asanyarray(ct_c.dataobj).astype(np.int16), ct_c.affine, ct.header)
lab_c = nib.Nifti1Image(np.asanyarray(lab_c.dataobj).astype(np.uint8), lab_c.affine, lab.header)
ct_c.set_data_dtype(np.int16)
ct_c.header["scl_slope"], ct_c.header["scl_inter"] = 1, 0
lab_c.set_data_dtype(np.uint8)
nib.save(ct_c, "ct_crop.nii.gz")
nib.save(lab_c, "ct_crop_label.nii.gz")
record("ct_crop.nii.gz", [("axial", 15), ("coronal", 20), ("sagittal", 25)])
record("ct_crop_label.nii.gz")
names = json.load(open(os.path.join(src, "labels.json")))["labels"]["totalseg_example_ct_label.nii.gz"]
present = set(int(v) for v in np.unique(np.asanyarray(lab_c.dataobj)))
json.dump({k: v for k, v in names.items() if int(k) in present}, open("ct_crop_labels.json", "w"), indent=1)

# 3. Synthetic volume in many encodings. phys is the volume in the canonical
# LPS frame (axis 0 -> Left, 1 -> Posterior, 2 -> Superior).
shape = (7, 5, 4)
i, j, k = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
phys = (i + 10 * j + 100 * k).astype(np.float32) - 150
np.save("syn_lps.npy", np.ascontiguousarray(phys.transpose(2, 1, 0)))  # C order: [k][j][i]
spacing = np.array([1.5, 2.0, 3.0])
lps_aff = np.diag([-1.5, -2.0, 3.0, 1.0])  # RAS world: i -> Left (-x), j -> Posterior (-y)
lps_aff[:3, 3] = [40, 30, -20]


def oriented(perm, flips):
    """Store phys with canonical axis a as file axis perm[a], reversed when
    flips[a]; return the file array and the affine that keeps each voxel's
    world position."""
    arr = phys
    aff = lps_aff.copy()
    for a in range(3):
        if flips[a]:
            arr = np.flip(arr, a)
            # canonical index c = n-1-f: world = A[:, a]*(n-1-f) + t
            aff[:3, 3] += aff[:3, a] * (shape[a] - 1)
            aff[:3, a] = -aff[:3, a]
    inv = np.argsort(perm)  # file axis f holds canonical axis inv[f]
    arr = np.transpose(arr, inv)
    faff = np.eye(4)
    faff[:3, 3] = aff[:3, 3]
    for f in range(3):
        faff[:3, f] = aff[:3, inv[f]]
    return np.ascontiguousarray(arr), faff


cases = {
    "syn_lps.nii": ((0, 1, 2), (False, False, False)),
    "syn_ras.nii.gz": ((0, 1, 2), (True, True, False)),
    "syn_las.nii.gz": ((0, 1, 2), (False, True, False)),
    "syn_pir.nii.gz": ((2, 0, 1), (False, False, True)),  # file axes point P, I, L
    "syn_sal.nii.gz": ((1, 2, 0), (True, True, False)),
}
for name, (perm, flips) in cases.items():
    arr, aff = oriented(perm, flips)
    img = nib.Nifti1Image(arr.astype(np.int16), aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    nib.save(img, name)
    record(name)
    # Cross-check: nibabel's own reorientation gives phys back.
    ras = np.asanyarray(nib.as_closest_canonical(nib.load(name)).dataobj)
    assert np.array_equal(ras[::-1, ::-1, :], phys), name

# sform (code 2) and qform disagree: the sform (RAS storage) wins.
arr, aff = oriented((0, 1, 2), (True, True, False))
img = nib.Nifti1Image(arr.astype(np.int16), aff)
img.set_sform(aff, code=2)
img.set_qform(lps_aff, code=1)  # wrong on purpose
nib.save(img, "syn_sform_wins.nii.gz")
record("syn_sform_wins.nii.gz")
# sform_code 0 with a garbage sform: the qform (LAS storage) is used.
arr, aff = oriented((0, 1, 2), (False, True, False))
img = nib.Nifti1Image(arr.astype(np.int16), None)
img.set_qform(aff, code=1)
img.header.set_sform(np.diag([9.0, 9.0, 9.0, 1.0]), code=0)
nib.save(img, "syn_qform_only.nii.gz")
record("syn_qform_only.nii.gz")
# Oblique: rotated 20 degrees about the z axis; nearest axes are still RAS.
arr, aff = oriented((0, 1, 2), (True, True, False))
t = np.deg2rad(20)
rot = np.array([[np.cos(t), -np.sin(t), 0, 0], [np.sin(t), np.cos(t), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
img = nib.Nifti1Image(arr.astype(np.int16), rot @ aff)
nib.save(img, "syn_oblique.nii.gz")
record("syn_oblique.nii.gz")

# Datatypes, scaling, byte order, version (all stored LPS-style).
arr, aff = oriented((0, 1, 2), (False, False, False))
for dt in ["uint8", "int8", "uint16", "int32", "uint32", "int64", "float32", "float64"]:
    vals = arr - arr.min() if dt.startswith("u") else arr
    if dt in ("uint8", "int8"):
        vals = (vals / 4).round()
    img = nib.Nifti1Image(vals.astype(dt), aff, dtype=dt)
    nib.save(img, f"syn_{dt}.nii")
    record(f"syn_{dt}.nii")
# Scaled int16: stored = (phys - 7) / 0.5.
img = nib.Nifti1Image(((arr - 7) / 0.5).astype(np.int16), aff)
img.header.set_slope_inter(0.5, 7)
nib.save(img, "syn_scaled.nii")
record("syn_scaled.nii")
# Big-endian, gzipped.
hdr = nib.Nifti1Header(endianness=">")
img = nib.Nifti1Image(arr.astype(np.float32), aff, hdr)
nib.save(img, "syn_bigendian.nii.gz")
assert open("syn_bigendian.nii.gz", "rb").read(2) == b"\x1f\x8b"
record("syn_bigendian.nii.gz")
# NIfTI-2, plain and gzipped.
img = nib.Nifti2Image(arr.astype(np.float32), aff)
nib.save(img, "syn_nifti2.nii")
nib.save(img, "syn_nifti2.nii.gz")
record("syn_nifti2.nii")
record("syn_nifti2.nii.gz")
# Two-file form.
img = nib.Nifti1Pair(arr.astype(np.int16), aff)
nib.save(img, "syn_pair.hdr")
record("syn_pair.hdr")

json.dump(golden, open("golden.json", "w"), indent=1)
print("wrote", len(golden["files"]), "files")
