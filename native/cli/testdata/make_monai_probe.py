#!/usr/bin/env python3
"""Writes monai_probe/: what MONAI 1.5.0's SegResNet computes in each of its modules for one
input, for native/cli/probe_test.go (`ctseg forward --probe` and `--confidence`).

The network is ../shared/golden/segresnet_small/model.pt (init_filters 8, 9 classes); the input
is new (not in ../shared): torch.randn of [1, 1, 16, 8, 24] (an awkward shape: the deepest level
is 2x1x3) from seed 31, in input.f32. Every module's output is taken with a forward hook, under
the module path MONAI names it by: convInit, down_layers.0..3, up_samples.0..2 (the upsampling,
before the skip's addition), up_layers.0..2, conv_final; each as NAME.f32 (raw little-endian
float32 [C, D, H, W]) and listed in index.json as `ctseg forward --probe` lists its own. p1.f32
is the softmax probability of each voxel's argmax class, in float64 (torch.softmax), [D, H, W].

usage (Debian 12: apt-get install python3-torch; MONAI 1.5.0's source on PYTHONPATH):
    PYTHONPATH=/path/to/MONAI-1.5.0 python3 make_monai_probe.py ../../../../shared
"""
import json
import os
import sys

import numpy as np
import torch
from monai.networks.nets import SegResNet

shared = sys.argv[1]
here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "monai_probe")
os.makedirs(here, exist_ok=True)

net = SegResNet(spatial_dims=3, in_channels=1, out_channels=9, init_filters=8,
                blocks_down=[1, 2, 2, 4], blocks_up=[1, 1, 1], dropout_prob=0.2)
net.load_state_dict(torch.load(os.path.join(shared, "golden", "segresnet_small", "model.pt"), map_location="cpu"))
net.eval()
torch.set_num_threads(1)

x = torch.randn([1, 1, 16, 8, 24], generator=torch.Generator().manual_seed(31), dtype=torch.float32)
x.numpy().astype("<f4").tofile(os.path.join(here, "input.f32"))

names = ["convInit"] + [f"down_layers.{i}" for i in range(4)]
for i in range(3):
    names += [f"up_samples.{i}", f"up_layers.{i}"]
names.append("conv_final")
outs = {}
for name in names:
    net.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: outs.__setitem__(name, o.detach().clone()))
with torch.no_grad():
    logits = net(x)
assert torch.equal(logits, outs["conv_final"])

index = {"monai": "1.5.0", "torch": torch.__version__, "input": {"file": "input.f32", "shape": list(x.shape)}, "blocks": []}
for name in names:
    t = outs[name][0]
    t.numpy().astype("<f4").tofile(os.path.join(here, name + ".f32"))
    index["blocks"].append({"name": name, "file": name + ".f32", "shape": list(t.shape), "dtype": "float32"})
p1 = torch.softmax(logits[0].double(), dim=0).max(dim=0).values
p1.numpy().astype("<f4").tofile(os.path.join(here, "p1.f32"))
with open(os.path.join(here, "index.json"), "w") as f:
    json.dump(index, f, indent=2)
    f.write("\n")
