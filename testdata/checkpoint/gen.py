#!/usr/bin/env python3
"""Generate the reference files for the Go package `checkpoint`.

Run from the repository root with a Python that has PyTorch and NumPy
(Debian: `apt-get install python3-torch python3-numpy`):

    /usr/bin/python3 testdata/checkpoint/gen.py

It writes, into testdata/checkpoint/:

* small checkpoints written by torch.save: `views.pth` (zip format; views,
  transposed and strided tensors sharing one storage, a zero-stride expanded
  tensor, a 0-d and an empty tensor, a Parameter, int64/int32/uint8/bool,
  float64, float16, bfloat16), `views_legacy.pth` (the same dict in the legacy
  non-zip format), `half.pth` ({'model': float16/bfloat16 state_dict}, zip),
  `legacy_train.pth` ({'model': ..., 'optimizer': Adam} in the legacy format);
* `handmade.safetensors`, written here by hand with struct + json (the
  `safetensors` package is not in Debian), header keys in insertion order,
  data in a different order than the header, `__metadata__`, header padded;
* `expected.json`: for every checkpoint above and for the three fixtures
  under testdata/fixtures, the tensors torch.load sees (state_dict order):
  name, shape, dtype, float64 sum and sum of squares of the values converted
  to float32, and for some tensors the name of a `.npy` file (float32, C order)
  holding the values as torch converts them with `.float()`.

Everything is seeded; re-running gives the same bytes.
"""

import collections
import json
import os
import struct

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures")

torch.manual_seed(20240701)


def dtype_name(dt):
    return str(dt).replace("torch.", "")


def npy_name(file, name):
    stem = os.path.splitext(os.path.basename(file))[0]
    return "%s__%s.npy" % (stem, name.replace(".", "_"))


def describe(file, sd, npy_for):
    """Describe every tensor of sd; write .npy files for names in npy_for."""
    out = []
    for name, t in sd.items():
        if not isinstance(t, torch.Tensor):
            continue
        f = t.detach().float().contiguous()
        a = f.numpy().astype(np.float64)
        entry = {
            "name": name,
            "shape": list(t.shape),
            "dtype": dtype_name(t.dtype),
            "sum": float(a.sum()),
            "sumsq": float((a * a).sum()),
        }
        if npy_for is True or name in npy_for:
            fn = npy_name(file, name)
            np.save(os.path.join(HERE, fn), f.numpy().astype("<f4"))
            entry["npy"] = fn
        out.append(entry)
    return out


def views_dict():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) * 0.5 - 3.0
    f16 = torch.randn(4, 5).half()
    bf16 = torch.randn(3, 4).bfloat16()
    ints = torch.tensor([[-5, 0, 7], [1 << 20, -1, 2]], dtype=torch.int64)
    d = collections.OrderedDict()
    d["base"] = base
    d["transposed"] = base.t()
    d["slice"] = base[1:3, 2:5]
    d["every_other"] = base[:, ::2]
    d["row"] = base[2]
    d["expanded"] = torch.randn(3, 1).expand(3, 4)
    d["scalar"] = torch.tensor(3.25)
    d["empty"] = torch.zeros(0, 3)
    d["param"] = torch.nn.Parameter(torch.randn(2, 3))
    d["ints64"] = ints
    d["ints32_t"] = ints.int().t()
    d["mask"] = torch.tensor([True, False, True, True])
    d["bytes"] = torch.tensor([0, 1, 254, 255], dtype=torch.uint8)
    d["f64"] = torch.randn(3, 2, dtype=torch.float64)
    d["f16"] = f16
    d["f16_t"] = f16.t()
    d["bf16"] = bf16
    d["bf16_cols"] = bf16[:, 1:3]
    return d


def half_dict():
    lin = torch.nn.Linear(4, 3).half()
    conv = torch.nn.Conv2d(2, 2, 3).bfloat16()
    sd = collections.OrderedDict()
    for k, v in lin.state_dict().items():
        sd["lin." + k] = v
    for k, v in conv.state_dict().items():
        sd["conv." + k] = v
    return sd


def train_dict():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt}, model.state_dict()


def write_safetensors(path):
    """Hand-written safetensors file: returns the tensors in header order."""
    g = torch.Generator().manual_seed(7)
    tensors = collections.OrderedDict()
    tensors["w"] = ("F32", torch.randn(2, 3, generator=g))
    tensors["h"] = ("F16", torch.randn(4, generator=g).half())
    tensors["b"] = ("BF16", torch.randn(2, 2, generator=g).bfloat16())
    tensors["idx"] = ("I64", torch.tensor([-3, 0, 9], dtype=torch.int64))
    tensors["d"] = ("F64", torch.randn(2, generator=g, dtype=torch.float64))
    tensors["flags"] = ("BOOL", torch.tensor([True, False, True]))
    tensors["px"] = ("U8", torch.tensor([[7, 200]], dtype=torch.uint8))
    tensors["i32"] = ("I32", torch.tensor([-70000, 5], dtype=torch.int32))
    tensors["s"] = ("F32", torch.tensor(1.5))

    def raw(t):
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().astype("<i2").tobytes()
        return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()

    # Data laid out in reverse header order, so offsets are not monotonic.
    blobs = {k: raw(t) for k, (_, t) in tensors.items()}
    offsets, pos = {}, 0
    for k in reversed(list(tensors)):
        offsets[k] = (pos, pos + len(blobs[k]))
        pos += len(blobs[k])
    header = collections.OrderedDict()
    header["__metadata__"] = {"format": "pt", "writer": "gen.py by hand"}
    for k, (dt, t) in tensors.items():
        header[k] = {"dtype": dt, "shape": list(t.shape), "data_offsets": list(offsets[k])}
    hb = json.dumps(header).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for k in reversed(list(tensors)):
            f.write(blobs[k])
    return collections.OrderedDict((k, t) for k, (_, t) in tensors.items())


def main():
    expected = collections.OrderedDict()

    vd = views_dict()
    torch.save(vd, os.path.join(HERE, "views.pth"))
    torch.save(vd, os.path.join(HERE, "views_legacy.pth"), _use_new_zipfile_serialization=False)
    expected["views.pth"] = {"format": "pth-zip", "tensors": describe("views.pth", vd, True)}
    expected["views_legacy.pth"] = {"format": "pth-legacy", "tensors": describe("views.pth", vd, ())}
    for e in expected["views_legacy.pth"]["tensors"]:
        e["npy"] = npy_name("views.pth", e["name"])

    hd = half_dict()
    torch.save({"model": hd}, os.path.join(HERE, "half.pth"))
    expected["half.pth"] = {"format": "pth-zip", "tensors": describe("half.pth", hd, True)}

    obj, td = train_dict()
    torch.save(obj, os.path.join(HERE, "legacy_train.pth"), _use_new_zipfile_serialization=False)
    expected["legacy_train.pth"] = {"format": "pth-legacy", "tensors": describe("legacy_train.pth", td, True)}

    st = write_safetensors(os.path.join(HERE, "handmade.safetensors"))
    expected["handmade.safetensors"] = {
        "format": "safetensors",
        "metadata": {"format": "pt", "writer": "gen.py by hand"},
        "tensors": describe("handmade.safetensors", st, True),
    }

    picks = {
        "sam_tiny/sam_tiny.pth": [
            "image_encoder.blocks.0.attn.rel_pos_h",
            "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
            "mask_decoder.iou_token.weight",
        ],
        "sammed2d_tiny/sammed2d_tiny.pth": [
            "image_encoder.blocks.0.Adapter.channel.0.weight",
            "mask_decoder.iou_token.weight",
        ],
        "sammed2d_tiny/sammed2d_tiny_train_format.pth": ["mask_decoder.iou_token.weight"],
    }
    for rel, names in picks.items():
        obj = torch.load(os.path.join(FIXTURES, rel))
        sd = obj["model"] if "model" in obj else obj
        for n in names:
            assert n in sd, (rel, n)
        expected["../fixtures/" + rel] = {
            "format": "pth-zip",
            "tensors": describe(rel, sd, names),
        }

    # One line per tensor keeps the file small and diffable.
    lines = ["{"]
    for i, (file, e) in enumerate(expected.items()):
        head = {k: v for k, v in e.items() if k != "tensors"}
        lines.append(" %s: {" % json.dumps(file))
        for k, v in head.items():
            lines.append("  %s: %s," % (json.dumps(k), json.dumps(v)))
        lines.append('  "tensors": [')
        ts = e["tensors"]
        for j, t in enumerate(ts):
            lines.append("   " + json.dumps(t) + ("," if j + 1 < len(ts) else ""))
        lines.append("  ]")
        lines.append(" }" + ("," if i + 1 < len(expected) else ""))
    lines.append("}")
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
