// The 3-D view of the label map: orthographic ray casting on the CPU, on the main thread,
// through the visible structures of the label map reduced to at most MAX_SIDE voxels a side. Each ray stops at the first
// visible structure; the surface is shaded by the gradient of the structures' occupancy
// around the hit (a smooth normal, where a depth-buffer normal shows the voxel steps). No GPU
// API: the WebGPU device belongs to the worker's segmentation, and a CPU image is the same in
// every browser. Drag: rotate; wheel: zoom; click: move the slice views to that point;
// double-click: back to the front view.

import { clearCanvas } from './views.js';

const MAX_SIDE = 192;

export class Render3D {
  // viewer: the slice Viewer, whose volume geometry, labels, colours and visibility this view
  // shows; onHover(h) receives {p, hu, label} like the slice views' hover, or null.
  constructor(canvas, viewer, onHover) {
    this.canvas = canvas;
    this.viewer = viewer;
    this.onHover = onHover || (() => {});
    this.az = 0; // rotation about the patient's S axis (0: seen from the front)
    this.el = 0; // tilt (positive: seen from above)
    this.zoom = 1;
    this.red = null; // reduced label volume
    this.hit = null; // per rendered pixel: 1 + reduced voxel index of the surface, or 0
    this.step = 1; // rendered pixel size in canvas pixels (larger while dragging)
    this.pending = false;
    this.off = document.createElement('canvas');
    viewer.changed = (what) => {
      // the reduction keeps visible structures only, so that a hidden one cannot take a block
      // from a shown one
      if (what !== 'colors') this.red = null;
      this.request(1);
    };
    this.settle = 0; // timer: a full-resolution frame once the wheel stops
    this.attach();
    new ResizeObserver(() => this.request(1)).observe(canvas.parentElement);
  }

  attach() {
    const c = this.canvas;
    let drag = null;
    const at = (ev) => {
      const r = c.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
      return [(ev.clientX - r.left) * dpr, (ev.clientY - r.top) * dpr];
    };
    c.addEventListener('contextmenu', (ev) => ev.preventDefault());
    c.addEventListener('pointerdown', (ev) => {
      if (ev.button !== 0) return;
      c.setPointerCapture(ev.pointerId);
      drag = { x: ev.clientX, y: ev.clientY, az: this.az, el: this.el, moved: false };
    });
    c.addEventListener('pointermove', (ev) => {
      if (!drag) {
        this.onHover(this.pick(...at(ev)));
        return;
      }
      const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      if (!drag.moved) return;
      this.az = drag.az + dx * 0.01;
      this.el = Math.max(-1.5, Math.min(1.5, drag.el + dy * 0.01));
      this.request(3);
    });
    c.addEventListener('pointerup', (ev) => {
      if (!drag) return;
      const moved = drag.moved;
      drag = null;
      if (moved) {
        this.request(1);
        return;
      }
      // a click (the second of a double-click only resets the view)
      const h = this.pick(...at(ev));
      if (h && ev.detail < 2) this.viewer.jumpTo(h.p);
      this.onHover(h);
    });
    c.addEventListener('pointercancel', () => {
      if (drag && drag.moved) this.request(1);
      drag = null;
    });
    c.addEventListener('pointerleave', () => { if (!drag) this.onHover(null); });
    c.addEventListener('dblclick', () => {
      this.az = this.el = 0;
      this.zoom = 1;
      this.request(1);
    });
    c.addEventListener('wheel', (ev) => {
      if (!this.red) return;
      ev.preventDefault();
      this.zoom = Math.max(0.5, Math.min(8, this.zoom * Math.exp(-ev.deltaY * 0.001)));
      // coarse frames while the wheel turns, a full one when it stops
      this.request(3);
      clearTimeout(this.settle);
      this.settle = setTimeout(() => this.request(1), 150);
    }, { passive: false });
  }

  // request schedules one draw per animation frame, at a rendered pixel size of step.
  request(step) {
    this.step = step;
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  // reduce builds the volume of the visible structures in patient axes, at most MAX_SIDE voxels
  // a side: index w of a reduced voxel grows along RAS world axis w, and a block is f[w] stored
  // voxels along it (per axis, so thick slices are not merged further). A block takes the first
  // visible structure found in it, so thin structures (ribs, vessels) keep their continuity.
  reduce() {
    const v = this.viewer.vol, labels = this.viewer.labels, vis = this.viewer.visible;
    if (!v || !labels) return null;
    const { dims, spacing, axisOf, sign } = v;
    const f = [0, 1, 2].map((w) => Math.max(1, Math.ceil(dims[axisOf[w]] / MAX_SIDE)));
    const n = [0, 1, 2].map((w) => Math.ceil(dims[axisOf[w]] / f[w]));
    const vs = [0, 1, 2].map((w) => spacing[axisOf[w]] * f[w]);
    const strideW = [1, n[0], n[0] * n[1]];
    const worldOf = [0, 0, 0];
    for (let w = 0; w < 3; w++) worldOf[axisOf[w]] = w;
    // the reduced index's share of stored index i along stored axis a
    const share = [0, 1, 2].map((a) => {
      const w = worldOf[a], out = new Int32Array(dims[a]);
      for (let i = 0; i < dims[a]; i++) out[i] = Math.floor((sign[w] > 0 ? i : dims[a] - 1 - i) / f[w]) * strideW[w];
      return out;
    });
    const data = new Uint8Array(n[0] * n[1] * n[2]);
    let idx = 0;
    for (let k = 0; k < dims[2]; k++) {
      const sk = share[2][k];
      for (let j = 0; j < dims[1]; j++) {
        const sj = sk + share[1][j], si = share[0];
        for (let i = 0; i < dims[0]; i++, idx++) {
          const l = labels[idx];
          if (l && vis[l]) {
            const r = sj + si[i];
            if (!data[r]) data[r] = l;
          }
        }
      }
    }
    return { n, vs, f, data };
  }

  // camera: screen right (ex), screen up (ey) and view direction (ez), in world axes. At rest the
  // patient is seen from the front, upright, the patient's right on the screen's left (as the
  // coronal view).
  camera() {
    const ca = Math.cos(this.az), sa = Math.sin(this.az), ce = Math.cos(this.el), se = Math.sin(this.el);
    const ex = [-ca, -sa, 0];
    const ez1 = [sa, -ca, 0];
    const ey0 = [0, 0, 1];
    const ey = [0, 1, 2].map((i) => ey0[i] * ce + ez1[i] * se);
    const ez = [0, 1, 2].map((i) => ez1[i] * ce - ey0[i] * se);
    return { ex, ey, ez };
  }

  draw() {
    const c = this.canvas, { ctx, dpr } = clearCanvas(c), W = c.width, H = c.height;
    const t0 = performance.now();
    if (!this.red) {
      this.red = this.reduce();
      c.dataset.reduceMs = (performance.now() - t0).toFixed(1);
    }
    const red = this.red;
    if (!red) {
      this.hit = null;
      ctx.fillStyle = 'rgba(255,255,255,0.45)';
      ctx.font = `${13 * dpr}px system-ui, sans-serif`;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText('3-D view of the structures, after a segmentation', W / 2, H / 2);
      return;
    }
    // no more than about three rays per reduced voxel across the view: more would only cost
    // (four times the rays on a high-density screen)
    const { n, vs, data } = red;
    const s = Math.max(this.step, Math.floor(Math.min(W, H) / (3 * Math.max(...n) * this.zoom)));
    const w = Math.ceil(W / s), h = Math.ceil(H / s);
    const img = new ImageData(w, h), px = img.data;
    const hit = new Int32Array(w * h);
    const [nx, ny, nz] = n;
    const ext = [0, 1, 2].map((i) => n[i] * vs[i]);
    const R = 0.5 * Math.hypot(...ext), C = ext.map((e) => e / 2);
    const mmPerPx = (2 * R) / Math.min(W, H) / this.zoom;
    const { ex, ey, ez } = this.camera();
    const colors = this.viewer.colors;
    const stepMM = 0.7 * Math.min(...vs);
    const d = [ez[0] * stepMM / vs[0], ez[1] * stepMM / vs[1], ez[2] * stepMM / vs[2]];
    // light from the viewer's upper left
    const L = [0, 1, 2].map((i) => -ez[i] - 0.35 * ex[i] + 0.45 * ey[i]);
    const ln = Math.hypot(...L);
    for (let i = 0; i < 3; i++) L[i] /= ln;
    const occ = (x, y, z) => (x < 0 || y < 0 || z < 0 || x >= nx || y >= ny || z >= nz || !data[x + nx * (y + ny * z)] ? 0 : 1);
    for (let py = 0; py < h; py++) {
      for (let pxi = 0; pxi < w; pxi++) {
        const sx = ((pxi + 0.5) * s - W / 2) * mmPerPx, sy = (H / 2 - (py + 0.5) * s) * mmPerPx;
        const o = [0, 1, 2].map((i) => C[i] + sx * ex[i] + sy * ey[i] - R * ez[i]);
        // clip the ray to the volume's box
        let t0 = 0, t1 = 2 * R;
        for (let i = 0; i < 3 && t0 < t1; i++) {
          if (Math.abs(ez[i]) < 1e-9) {
            if (o[i] < 0 || o[i] >= ext[i]) t1 = -1;
            continue;
          }
          const a = (0 - o[i]) / ez[i], b = (ext[i] - o[i]) / ez[i];
          t0 = Math.max(t0, Math.min(a, b));
          t1 = Math.min(t1, Math.max(a, b));
        }
        if (t0 >= t1) continue;
        let fx = (o[0] + ez[0] * t0) / vs[0], fy = (o[1] + ez[1] * t0) / vs[1], fz = (o[2] + ez[2] * t0) / vs[2];
        for (let t = t0; t < t1; t += stepMM, fx += d[0], fy += d[1], fz += d[2]) {
          const ix = Math.floor(fx), iy = Math.floor(fy), iz = Math.floor(fz);
          if (ix < 0 || iy < 0 || iz < 0 || ix >= nx || iy >= ny || iz >= nz) continue;
          const r = ix + nx * (iy + ny * iz), l = data[r];
          if (!l) continue;
          // outward normal: minus the gradient of the occupancy, summed over the 3x3 neighbours
          let gx = 0, gy = 0, gz = 0;
          for (let a = -1; a <= 1; a++) {
            for (let b = -1; b <= 1; b++) {
              gx += occ(ix + 1, iy + a, iz + b) - occ(ix - 1, iy + a, iz + b);
              gy += occ(ix + a, iy + 1, iz + b) - occ(ix + a, iy - 1, iz + b);
              gz += occ(ix + a, iy + b, iz + 1) - occ(ix + a, iy + b, iz - 1);
            }
          }
          let nrm = [-gx / vs[0], -gy / vs[1], -gz / vs[2]];
          const nl = Math.hypot(...nrm);
          nrm = nl > 0 ? nrm.map((q) => q / nl) : ez.map((q) => -q);
          const diffuse = Math.max(0, nrm[0] * L[0] + nrm[1] * L[1] + nrm[2] * L[2]);
          const shade = (0.25 + 0.75 * diffuse) * (1 - 0.25 * t / (2 * R)); // depth from the view's front plane
          const q = 4 * (py * w + pxi), cc = 3 * l;
          px[q] = colors[cc] * shade;
          px[q + 1] = colors[cc + 1] * shade;
          px[q + 2] = colors[cc + 2] * shade;
          px[q + 3] = 255;
          hit[py * w + pxi] = r + 1;
          break;
        }
      }
    }
    this.off.width = w;
    this.off.height = h;
    this.off.getContext('2d').putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = s > 1;
    ctx.drawImage(this.off, 0, 0, w * s, h * s);
    this.hit = { buf: hit, w, h, s };
    c.dataset.drawMs = (performance.now() - t0).toFixed(1); // read by the tests and benchmarks
  }

  // pick returns what the surface under canvas point (x, y) is: the structure, and the voxel of
  // that structure nearest its reduced block's centre (for the slice views and the HU), or null.
  pick(x, y) {
    const hb = this.hit, red = this.red, v = this.viewer.vol, labels = this.viewer.labels;
    if (!hb || !red || !v || !labels) return null;
    const u = Math.floor(x / hb.s), q = Math.floor(y / hb.s);
    if (u < 0 || q < 0 || u >= hb.w || q >= hb.h) return null;
    const r1 = hb.buf[q * hb.w + u];
    if (!r1) return null;
    const r = r1 - 1, [nx, ny] = red.n, label = red.data[r];
    const rw = [r % nx, Math.floor(r / nx) % ny, Math.floor(r / (nx * ny))];
    // the block's range of stored indices along each stored axis
    const lo = [0, 0, 0], hi = [0, 0, 0];
    for (let w = 0; w < 3; w++) {
      const a = v.axisOf[w];
      let b0 = rw[w] * red.f[w], b1 = Math.min(v.dims[a], b0 + red.f[w]) - 1;
      if (v.sign[w] < 0) [b0, b1] = [v.dims[a] - 1 - b1, v.dims[a] - 1 - b0];
      lo[a] = b0;
      hi[a] = b1;
    }
    const d = v.dims, mid = [0, 1, 2].map((a) => (lo[a] + hi[a]) / 2);
    let best = null, bestD = Infinity;
    for (let k = lo[2]; k <= hi[2]; k++) {
      for (let j = lo[1]; j <= hi[1]; j++) {
        for (let i = lo[0]; i <= hi[0]; i++) {
          if (labels[i + d[0] * (j + d[1] * k)] !== label) continue;
          const dd = (i - mid[0]) ** 2 + (j - mid[1]) ** 2 + (k - mid[2]) ** 2;
          if (dd < bestD) {
            bestD = dd;
            best = [i, j, k];
          }
        }
      }
    }
    if (!best) return null; // the block was reduced from labels since replaced
    return { p: best, hu: v.hu[best[0] + d[0] * (best[1] + d[1] * best[2])], label };
  }
}
