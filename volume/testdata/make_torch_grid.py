#!/usr/bin/env python3
"""Writes torch_grid.json: what the float64 arithmetic under MONAI's Spacingd gives on the stack
the golden outputs were made with (Debian 12: python3-torch 1.13.1, numpy 1.24.2 with OpenBLAS
0.3.21; apt-get install python3-torch), for volume/gridsample_test.go:

- base: SHA-256 of the float64 little-endian coordinates affine_grid (align_corners=False) puts
  along an axis of n voxels, n = 1..512 (its linspace_from_neg_one: linspace(-1, 1, n) * (n-1) / n);
- solve: numpy.linalg.solve(A, B) on 4x4 affines (axis-aligned, permuted and flipped, rotated
  about one axis, random), every value as a hex float.

usage: python3 make_torch_grid.py > torch_grid.json
"""
import hashlib
import json

import numpy as np
import torch

out = {"torch": torch.__version__, "numpy": np.__version__, "base": {}, "solve": []}
for n in range(1, 513):
    theta = torch.tensor([[[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]], dtype=torch.float64)
    g = torch.nn.functional.affine_grid(theta, [1, 1, 1, 1, n], align_corners=False)
    w = np.ascontiguousarray(g[0, 0, 0, :, 0].numpy().astype("<f8"))
    out["base"][str(n)] = hashlib.sha256(w.tobytes()).hexdigest()

rng = np.random.default_rng(3)
for i in range(120):
    A, B = np.eye(4), np.eye(4)
    kind = i % 4
    if kind == 0:  # axis-aligned, the usual CT, to 1.5 or 3 mm
        s = rng.choice([0.5, 0.7, 0.9765625, 1.25, 1.5, 2, 2.5, 3, 3.3, 5], 3) * rng.choice([-1, 1], 3)
        A[:3, :3] = np.diag(s)
        A[:3, 3] = rng.normal(size=3) * 100
        B[:3, :3] = np.diag(rng.choice([1.5, 3.0], 3) * np.sign(s))
        B[:3, 3] = A[:3, 3] + rng.integers(-3, 3, 3) * 0.5
    elif kind == 1:  # permuted and flipped axes
        P = np.eye(3)[rng.permutation(3)] * rng.choice([-1, 1], 3)[:, None] * rng.uniform(0.5, 3, 3)[:, None]
        A[:3, :3] = P
        A[:3, 3] = rng.normal(size=3) * 100
        B[:3, :3] = np.diag([1.5, 1.5, 1.5])
        B[:3, 3] = rng.normal(size=3) * 100
    elif kind == 2:  # rotated about S (a gantry-aligned oblique series)
        t = rng.uniform(0, 0.3)
        R = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
        A[:3, :3] = R @ np.diag(rng.uniform(0.5, 3, 3))
        A[:3, 3] = rng.normal(size=3) * 100
        B[:3, :3] = R @ np.diag([1.5] * 3)
        B[:3, 3] = A[:3, 3]
    else:  # anything
        A[:3, :3] = rng.normal(size=(3, 3))
        A[:3, 3] = rng.normal(size=3) * 100
        B[:3, :3] = rng.normal(size=(3, 3))
        B[:3, 3] = rng.normal(size=3) * 100
    X = np.linalg.solve(A, B)
    out["solve"].append({m: [[float.hex(float(v)) for v in r] for r in M] for m, M in (("a", A), ("b", B), ("x", X))})
print(json.dumps(out, indent=0))
