#!/usr/bin/env python3
"""Runs the MONAI wholeBody_ct_segmentation bundle's inference pipeline (its inference.json:
preprocessing, SegResNet, SlidingWindowInferer, softmax, argmax, Invertd) on one CT with the
given weights, on the CPU in float32, and writes the label map as uint8 NIfTI. It is the
reference ctseg's whole pipeline is compared with (README, "Correctness"; the golden files in
../shared hold the pieces, not a whole run).

It needs MONAI's source tree (MONAI is pure Python: a checkout of tag 1.5.0 or 1.4.0 will do)
and PyTorch, numpy and nibabel; on Debian 12: apt-get install python3-torch python3-nibabel.

usage: MONAI_SRC=/path/to/MONAI monai_bundle_segment.py --input CT.nii.gz --weights model.pt
           --spacing 1.5|3 --output labels.nii.gz [--threads N]
"""
import argparse
import os
import sys
import time

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, os.environ.get("MONAI_SRC", "."))
from monai.data import MetaTensor  # noqa: E402
from monai.inferers import SlidingWindowInferer  # noqa: E402
from monai.networks.nets import SegResNet  # noqa: E402
from monai.transforms import (  # noqa: E402
    Activationsd, AsDiscreted, Compose, EnsureChannelFirstd, EnsureTyped, Invertd,
    LoadImaged, NormalizeIntensityd, Orientationd, ScaleIntensityd, Spacingd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--spacing", type=float, default=1.5)
    ap.add_argument("--output", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    p = a.spacing
    pre = Compose([
        LoadImaged(keys="image"), EnsureTyped(keys="image"), EnsureChannelFirstd(keys="image"),
        Orientationd(keys="image", axcodes="RAS"),
        Spacingd(keys="image", pixdim=[p, p, p], mode="bilinear"),
        NormalizeIntensityd(keys="image", nonzero=True),
        ScaleIntensityd(keys="image", minv=-1.0, maxv=1.0),
    ])
    net = SegResNet(spatial_dims=3, in_channels=1, out_channels=105, init_filters=32,
                    blocks_down=[1, 2, 2, 4], blocks_up=[1, 1, 1], dropout_prob=0.2)
    sd = torch.load(a.weights, map_location="cpu")
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    net.load_state_dict(sd)
    net.eval()
    inferer = SlidingWindowInferer(roi_size=[96, 96, 96], sw_batch_size=1, overlap=0.25,
                                   mode="gaussian", sigma_scale=0.125, padding_mode="replicate")
    post = Compose([
        Activationsd(keys="pred", softmax=True),
        AsDiscreted(keys="pred", argmax=True),
        Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=True, to_tensor=True),
    ])
    t0 = time.time()
    d = pre({"image": a.input})
    with torch.no_grad():
        logits = inferer(d["image"][None], net)[0]
    d["pred"] = MetaTensor(logits, meta=d["image"].meta)
    d = post(d)
    labels = d["pred"].numpy()[0].astype(np.uint8)
    ref = nib.load(a.input)
    nib.save(nib.Nifti1Image(labels, ref.affine), a.output)
    print(f"{a.input} at {p} mm: {time.time() - t0:.1f} s, grid {tuple(d['image'].shape[1:])}")


if __name__ == "__main__":
    main()
