#!/usr/bin/env python3
"""Times one 96^3 window of the bundle's SegResNet in PyTorch, f32 and under CUDA autocast
(as the bundle's evaluator runs it), on the machine it runs on, so BENCHMARKS.md can give
ctseg's figures as a ratio to PyTorch on the same hardware.

The network is written out here in plain PyTorch (MONAI is not needed) with MONAI's module
names, so MONAI checkpoints load into it; --check compares it with a golden output first.

usage: pytorch_bench.py [--weights model.pt --input in.f32 --output out.f32 --shape D,H,W]
                        [--roi 96] [--repeat 5] [--device cuda|cpu] [--threads N] [--json FILE]

On the CPU give --threads: torch's default thread count is not always the core count (Debian's
torch 1.13 took one thread on the 2-core CI machine), and a comparison needs ctseg's.
"""
import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn as nn


class Wrap(nn.Module):  # MONAI's Convolution keeps the conv under ".conv"
    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return self.conv(x)


def conv3(ci, co, stride=1):
    return Wrap(nn.Conv3d(ci, co, 3, stride=stride, padding=1, bias=False))


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, c)
        self.norm2 = nn.GroupNorm(8, c)
        self.conv1 = conv3(c, c)
        self.conv2 = conv3(c, c)

    def forward(self, x):
        y = self.conv1(torch.relu(self.norm1(x)))
        y = self.conv2(torch.relu(self.norm2(y)))
        return y + x


class SegResNet(nn.Module):
    def __init__(self, f=32, k=105, down=(1, 2, 2, 4), up=(1, 1, 1)):
        super().__init__()
        self.convInit = conv3(1, f)
        self.down_layers = nn.ModuleList()
        for i, n in enumerate(down):
            c = f * 2**i
            first = conv3(c // 2, c, 2) if i > 0 else nn.Identity()
            self.down_layers.append(nn.Sequential(first, *[ResBlock(c) for _ in range(n)]))
        self.up_samples = nn.ModuleList()
        self.up_layers = nn.ModuleList()
        top = len(down) - 1
        for i, n in enumerate(up):
            c = f * 2 ** (top - 1 - i)
            self.up_samples.append(nn.Sequential(
                Wrap(nn.Conv3d(2 * c, c, 1, bias=False)),
                nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)))
            self.up_layers.append(nn.Sequential(*[ResBlock(c) for _ in range(n)]))
        self.conv_final = nn.Sequential(nn.GroupNorm(8, f), nn.ReLU(), Wrap(nn.Conv3d(f, k, 1, bias=True)))

    def forward(self, x):
        x = self.convInit(x)
        skips = []
        for d in self.down_layers:
            x = d(x)
            skips.append(x)
        skips.pop()
        for up, layer in zip(self.up_samples, self.up_layers):
            x = up(x) + skips.pop()
            x = layer(x)
        return self.conv_final(x)


def load(path):
    sd = torch.load(path, map_location="cpu")
    for key in ("model", "state_dict", "network"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    f = sd["convInit.conv.weight"].shape[0]
    k = sd["conv_final.2.conv.weight"].shape[0]
    net = SegResNet(f, k)
    net.load_state_dict(sd)
    return net


def timeit(fn, repeat, sync):
    fn()
    fn()
    sync()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights")
    ap.add_argument("--input")
    ap.add_argument("--output")
    ap.add_argument("--shape")
    ap.add_argument("--roi", type=int, default=96)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    rep = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
           "cudnn_tf32": torch.backends.cudnn.allow_tf32 if dev.type == "cuda" else None,
           "threads": torch.get_num_threads()}
    print(f"torch {torch.__version__} on {rep['device']}, {rep['threads']} threads")
    if a.weights and a.input and a.output:
        net = load(a.weights).eval().to(dev)
        shape = [int(s) for s in a.shape.split(",")]
        x = torch.from_numpy(np.fromfile(a.input, dtype="<f4").reshape([1, 1] + shape)).to(dev)
        want = np.fromfile(a.output, dtype="<f4")
        torch.backends.cudnn.allow_tf32 = False  # exact f32 for the check
        with torch.no_grad():
            got = net(x).float().cpu().numpy().ravel()
        torch.backends.cudnn.allow_tf32 = True
        rep["check_max_abs_error"] = float(np.abs(got - want).max())
        print(f"check against golden: max abs error {rep['check_max_abs_error']:.3g}")
    torch.manual_seed(0)
    net = SegResNet().eval().to(dev)
    x = torch.randn(1, 1, a.roi, a.roi, a.roi, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    gflop = 494.4 * (a.roi / 96) ** 3
    with torch.no_grad():
        t32 = timeit(lambda: net(x), a.repeat, sync)
        rep["f32_seconds"] = t32
        print(f"f32 (TF32 convs: {rep['cudnn_tf32']}): median {statistics.median(t32):.4f} s, {gflop / statistics.median(t32):.0f} GFLOP/s")
        if dev.type == "cuda":
            torch.backends.cudnn.allow_tf32 = False
            t32s = timeit(lambda: net(x), a.repeat, sync)
            torch.backends.cudnn.allow_tf32 = True
            rep["f32_strict_seconds"] = t32s
            print(f"f32 (no TF32): median {statistics.median(t32s):.4f} s, {gflop / statistics.median(t32s):.0f} GFLOP/s")
            with torch.autocast("cuda", dtype=torch.float16):
                t16 = timeit(lambda: net(x), a.repeat, sync)
            rep["autocast_seconds"] = t16
            print(f"autocast f16: median {statistics.median(t16):.4f} s, {gflop / statistics.median(t16):.0f} GFLOP/s")
            rep["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rep, f, indent=2)


if __name__ == "__main__":
    main()
