"""Times the official PyTorch SAM / SAM-Med2D code as `segsam bench` times
segsam: random weights, the image encoder on a zero input, then the prompt
encoder + mask decoder for one box per call and for 16 boxes in one call.

segsam runs this only when asked (`segsam bench --torch-sam DIR` or
`--torch-sammed2d DIR`): DIR is a checkout of the official repository (the
folder holding its `segment_anything` package). Nothing of that code is in
segsam. Prints one JSON object on the last line of stdout.

usage: python3 torchbench.py --code DIR --arch sammed2d_vit_b|vit_b|vit_l|vit_h
       [--runs N] [--prompts N] [--threads N]
"""
import argparse
import json
import statistics
import sys
import time


def stub_missing_modules():
    """The packages' __init__ imports torchvision (and SAM-Med2D's cv2) for
    pre- and post-processing helpers this timing never calls: stand-ins let
    the model code import where those are not installed."""
    import importlib.util
    import types
    stubs = {"torchvision": ["torchvision.transforms", "torchvision.transforms.functional",
                             "torchvision.ops", "torchvision.ops.boxes"], "cv2": []}
    for top, subs in stubs.items():
        if importlib.util.find_spec(top) is not None:
            continue
        for name in [top] + subs:
            m = types.ModuleType(name)
            m.__path__ = []

            def getattr_(attr, _name=name):
                if attr.startswith("__"):
                    raise AttributeError(attr)

                def missing(*args, **kwargs):
                    raise RuntimeError(_name + "." + attr + " is not installed (torchbench stand-in)")
                return missing
            m.__getattr__ = getattr_
            sys.modules[name] = m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--code", required=True)
    ap.add_argument("--arch", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    sys.path.insert(0, a.code)
    import torch
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    stub_missing_modules()
    import importlib
    build_sam = importlib.import_module("segment_anything.build_sam")
    t0 = time.perf_counter()
    if a.arch == "sammed2d_vit_b":
        ns = argparse.Namespace(image_size=256, sam_checkpoint=None, encoder_adapter=True)
        model = build_sam.sam_model_registry["vit_b"](ns)
    else:
        model = build_sam.sam_model_registry[a.arch](checkpoint=None)
    model.eval()
    build = time.perf_counter() - t0
    s = model.image_encoder.img_size
    x = torch.zeros(1, 3, s, s)
    with torch.no_grad():
        t0 = time.perf_counter()
        emb = model.image_encoder(x)
        first = time.perf_counter() - t0
        enc = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            model.image_encoder(x)
            enc.append(time.perf_counter() - t0)
        pe = model.prompt_encoder

        def decode(boxes):
            sparse, dense = pe(points=None, boxes=boxes, masks=None)
            return model.mask_decoder(image_embeddings=emb, image_pe=pe.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                      multimask_output=False)

        def timed(boxes, n):
            decode(boxes)
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                decode(boxes)
                out.append(time.perf_counter() - t0)
            return statistics.median(out)

        one = torch.tensor([[s / 4, s / 4, s * 3 / 4, s * 3 / 4]], dtype=torch.float32)
        many = torch.tensor([[k * s / 64, k * s / 64, s / 2 + k * s / 64, s / 2 + k * s / 64] for k in range(16)],
                            dtype=torch.float32)
        dec = timed(one, a.prompts)
        dec16 = timed(many, max(3, a.prompts // 4))
    print(json.dumps({
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "build_s": build, "encoder_first_s": first, "encoder_median_s": statistics.median(enc),
        "decoder_s": dec, "decoder16_s": dec16,
    }))


if __name__ == "__main__":
    main()
