// Three linked slice views (axial, coronal, sagittal) drawn on 2-D canvases from typed arrays.
// Each redraw of a view costs O(one slice): the slice is composed into a small ImageData at
// voxel resolution (window/level through a 64 K lookup table, the label overlay blended per
// pixel) and scaled onto the canvas by drawImage; crosshair and text are drawn on top.
// Display follows the radiological convention: the patient's right on the screen's left,
// anterior up in axial, superior up in coronal and sagittal.

// A view shows the plane of one world axis (0 R, 1 A, 2 S). u and v are its screen axes: the
// world axis each follows and the direction (+1: screen coordinate grows with the world axis).
const VIEWS = {
  axial: { fixed: 2, u: [0, -1], v: [1, -1], edges: ['R', 'L', 'A', 'P'] },
  coronal: { fixed: 1, u: [0, -1], v: [2, -1], edges: ['R', 'L', 'S', 'I'] },
  sagittal: { fixed: 0, u: [1, -1], v: [2, -1], edges: ['A', 'P', 'S', 'I'] },
};

// orientation returns, for each world axis, the stored array axis closest to it and the sign
// of that axis's direction, from the affine's 3x3 block (columns: stored axes).
export function orientation(affine) {
  const used = [false, false, false];
  const axisOf = [0, 0, 0], sign = [1, 1, 1];
  // Greedy on the largest components, so an oblique affine still gets a permutation.
  const cand = [];
  for (let w = 0; w < 3; w++) for (let a = 0; a < 3; a++) cand.push([Math.abs(affine[w * 4 + a]), w, a]);
  cand.sort((p, q) => q[0] - p[0]);
  const doneW = [false, false, false];
  for (const [, w, a] of cand) {
    if (doneW[w] || used[a]) continue;
    doneW[w] = used[a] = true;
    axisOf[w] = a;
    sign[w] = affine[w * 4 + a] < 0 ? -1 : 1;
  }
  return { axisOf, sign };
}

// clearCanvas sizes a canvas to its displayed size in device pixels (sharp on high-density
// screens), paints it black and returns its 2-D context and the pixel ratio.
export function clearCanvas(c) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(c.clientWidth * dpr)), h = Math.max(1, Math.round(c.clientHeight * dpr));
  if (c.width !== w || c.height !== h) {
    c.width = w;
    c.height = h;
  }
  const ctx = c.getContext('2d');
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, w, h);
  return { ctx, dpr };
}

export class Viewer {
  // canvases: {axial, coronal, sagittal} -> HTMLCanvasElement
  constructor(canvases, onHover) {
    this.canvases = canvases;
    this.onHover = onHover || (() => {});
    this.vol = null;
    this.labels = null;
    this.window = { w: 400, l: 40 };
    this.opacity = 0.45;
    this.showOverlay = true;
    this.colors = new Uint8Array(256 * 3);
    this.visible = new Uint8Array(256).fill(1);
    this.lut = new Uint8Array(65536);
    this.state = {};
    this.pending = new Set();
    this.changed = () => {}; // told what changed ('volume', 'labels', 'colors', 'visible'): the 3-D view
    for (const [name, c] of Object.entries(canvases)) {
      this.state[name] = { zoom: 1, panX: 0, panY: 0, img: null, dirty: true, off: document.createElement('canvas') };
      this.attach(name, c);
    }
    this.updateLUT();
    new ResizeObserver(() => this.redrawAll(false)).observe(Object.values(canvases)[0].parentElement.parentElement);
  }

  // setVolume(hu: Int16Array, dims, spacing, affine)
  setVolume(hu, dims, spacing, affine) {
    const { axisOf, sign } = orientation(affine);
    const stride = [1, dims[0], dims[0] * dims[1]];
    this.vol = { hu, dims, spacing, axisOf, sign, stride };
    this.labels = null;
    this.cursor = dims.map((n) => Math.floor(n / 2));
    for (const s of Object.values(this.state)) Object.assign(s, { zoom: 1, panX: 0, panY: 0 });
    this.redrawAll(true);
    this.changed('volume');
  }

  setLabels(labels) {
    this.labels = labels;
    this.redrawAll(true);
    this.changed('labels');
  }

  setColors(colors) {
    colors.forEach((c, i) => this.colors.set(c, 3 * i));
    this.redrawAll(true);
    this.changed('colors');
  }

  setVisible(label, on) {
    this.visible[label] = on ? 1 : 0;
    this.redrawAll(true);
    this.changed('visible');
  }

  setAllVisible(labelsList, on) {
    for (const l of labelsList) this.visible[l] = on ? 1 : 0;
    this.redrawAll(true);
    this.changed('visible');
  }

  setWindow(w, l) {
    this.window = { w: Math.max(1, w), l };
    this.updateLUT();
    this.redrawAll(true);
  }

  setOpacity(a) {
    this.opacity = a;
    this.redrawAll(true);
  }

  setOverlay(on) {
    this.showOverlay = on;
    this.redrawAll(true);
  }

  // setConfidence shows where the model hesitates over the labels: {p1, p2, second} on the
  // CT's grid (Uint8Arrays, probabilities times 255, and the runner-up label), mode 'p1' or
  // 'margin' (p1 - p2), thr in the same units; null for the plain labels.
  setConfidence(c) {
    this.conf = c;
    this.redrawAll(true);
  }

  updateLUT() {
    const { w, l } = this.window;
    const lo = l - w / 2;
    for (let i = 0; i < 65536; i++) {
      const g = ((i - 32768 - lo) / w) * 255;
      this.lut[i] = g <= 0 ? 0 : g >= 255 ? 255 : g;
    }
  }

  // geometry of a view: stored axes and flips for u, v and the fixed axis.
  geom(name) {
    const v = VIEWS[name], vol = this.vol;
    const au = vol.axisOf[v.u[0]], av = vol.axisOf[v.v[0]], af = vol.axisOf[v.fixed];
    return {
      au, av, af,
      flipU: vol.sign[v.u[0]] !== v.u[1],
      flipV: vol.sign[v.v[0]] !== v.v[1],
      W: vol.dims[au], H: vol.dims[av],
      spU: vol.spacing[au], spV: vol.spacing[av],
    };
  }

  // layout: where the slice image lands on the canvas (device pixels).
  layout(name) {
    const g = this.geom(name), s = this.state[name], c = this.canvases[name];
    const fit = Math.min(c.width / (g.W * g.spU), c.height / (g.H * g.spV));
    const scale = fit * s.zoom;
    const dw = g.W * g.spU * scale, dh = g.H * g.spV * scale;
    return { g, scale, x0: (c.width - dw) / 2 + s.panX, y0: (c.height - dh) / 2 + s.panY, pu: g.spU * scale, pv: g.spV * scale };
  }

  // voxelAt maps a canvas point to a stored voxel index, or null outside the slice.
  voxelAt(name, px, py) {
    const L = this.layout(name), g = L.g;
    const u = Math.floor((px - L.x0) / L.pu), v = Math.floor((py - L.y0) / L.pv);
    if (u < 0 || v < 0 || u >= g.W || v >= g.H) return null;
    const p = this.cursor.slice();
    p[g.au] = g.flipU ? g.W - 1 - u : u;
    p[g.av] = g.flipV ? g.H - 1 - v : v;
    return p;
  }

  redrawAll(dirty) {
    for (const name of Object.keys(this.state)) this.redraw(name, dirty);
  }

  // redraw coalesces requests into one animation frame per view.
  redraw(name, dirty) {
    if (dirty) this.state[name].dirty = true;
    if (this.pending.size === 0) requestAnimationFrame(() => this.flush());
    this.pending.add(name);
  }

  flush() {
    const names = [...this.pending];
    this.pending.clear();
    for (const n of names) this.draw(n);
  }

  // compose renders the current slice of a view into its offscreen canvas.
  compose(name) {
    const s = this.state[name], vol = this.vol, g = this.geom(name);
    const { W, H } = g;
    if (s.off.width !== W || s.off.height !== H || !s.img) {
      s.off.width = W;
      s.off.height = H;
      s.img = new ImageData(W, H);
    }
    const px = s.img.data, hu = vol.hu, lut = this.lut, labels = this.showOverlay ? this.labels : null;
    const st = vol.stride;
    const du = g.flipU ? -st[g.au] : st[g.au];
    const dv = g.flipV ? -st[g.av] : st[g.av];
    let rowStart = this.cursor[g.af] * st[g.af] + (g.flipU ? (W - 1) * st[g.au] : 0) + (g.flipV ? (H - 1) * st[g.av] : 0);
    const colors = this.colors, vis = this.visible, a = this.opacity;
    const conf = labels ? this.conf : null;
    let o = 0;
    for (let v = 0; v < H; v++, rowStart += dv) {
      let i = rowStart;
      for (let u = 0; u < W; u++, i += du, o += 4) {
        const gray = lut[hu[i] + 32768];
        const l = labels ? labels[i] : 0;
        if (conf) {
          // Where the model hesitates (p1, or p1 - p2, under the threshold) the two candidates'
          // colours are mixed by their shares of p1 + p2 (NiiVue's PAQD); elsewhere the label
          // is faint, so the eye goes to the doubt.
          const p1 = conf.p1[i], p2 = conf.p2[i], s2 = conf.second[i];
          const c = conf.mode === 'margin' ? p1 - p2 : p1;
          let r = 0, gg = 0, b = 0, al = 0;
          if (c < conf.thr) {
            const w2 = p1 + p2 > 0 ? p2 / (p1 + p2) : 0;
            const c1 = 3 * l, c2 = 3 * s2;
            const k1 = l ? 1 - w2 : 0, k2 = s2 ? w2 : 0;
            r = colors[c1] * k1 + colors[c2] * k2;
            gg = colors[c1 + 1] * k1 + colors[c2 + 1] * k2;
            b = colors[c1 + 2] * k1 + colors[c2 + 2] * k2;
            al = Math.max(a, 0.75) * (k1 + k2);
            if (k1 + k2 > 0) { r /= k1 + k2; gg /= k1 + k2; b /= k1 + k2; }
          } else if (l && vis[l]) {
            r = colors[3 * l]; gg = colors[3 * l + 1]; b = colors[3 * l + 2];
            al = a * 0.25;
          }
          px[o] = gray + (r - gray) * al;
          px[o + 1] = gray + (gg - gray) * al;
          px[o + 2] = gray + (b - gray) * al;
        } else if (l && vis[l]) {
          const c = 3 * l;
          px[o] = gray + (colors[c] - gray) * a;
          px[o + 1] = gray + (colors[c + 1] - gray) * a;
          px[o + 2] = gray + (colors[c + 2] - gray) * a;
        } else {
          px[o] = px[o + 1] = px[o + 2] = gray;
        }
        px[o + 3] = 255;
      }
    }
    s.off.getContext('2d').putImageData(s.img, 0, 0);
    s.dirty = false;
  }

  draw(name) {
    const c = this.canvases[name];
    const { ctx, dpr } = clearCanvas(c);
    if (!this.vol) {
      if (name === 'axial') {
        ctx.fillStyle = 'rgba(255,255,255,0.45)';
        ctx.font = `${14 * dpr}px system-ui, sans-serif`;
        ctx.textAlign = 'center';
        ctx.textBaseline = 'middle';
        ctx.fillText('Drop a CT (.nii, .nii.gz) anywhere, or load the sample', c.width / 2, c.height / 2);
      }
      return;
    }
    const s = this.state[name];
    if (s.dirty) this.compose(name);
    const L = this.layout(name), g = L.g;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(s.off, L.x0, L.y0, g.W * L.pu, g.H * L.pv);
    // crosshair through the cursor voxel's centre, with a gap so the voxel stays visible
    const cu = g.flipU ? g.W - 1 - this.cursor[g.au] : this.cursor[g.au];
    const cv = g.flipV ? g.H - 1 - this.cursor[g.av] : this.cursor[g.av];
    const x = L.x0 + (cu + 0.5) * L.pu, y = L.y0 + (cv + 0.5) * L.pv;
    const gap = 8 * dpr;
    ctx.strokeStyle = 'rgba(255, 214, 0, 0.75)';
    ctx.lineWidth = dpr;
    ctx.beginPath();
    ctx.moveTo(L.x0, y); ctx.lineTo(x - gap, y);
    ctx.moveTo(x + gap, y); ctx.lineTo(L.x0 + g.W * L.pu, y);
    ctx.moveTo(x, L.y0); ctx.lineTo(x, y - gap);
    ctx.moveTo(x, y + gap); ctx.lineTo(x, L.y0 + g.H * L.pv);
    ctx.stroke();
    // orientation letters and slice number
    const e = VIEWS[name].edges;
    ctx.fillStyle = 'rgba(255,255,255,0.8)';
    ctx.font = `${12 * dpr}px system-ui, sans-serif`;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'left';
    ctx.fillText(e[0], 6 * dpr, c.height / 2);
    ctx.textAlign = 'right';
    ctx.fillText(e[1], c.width - 6 * dpr, c.height / 2);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    ctx.fillText(e[2], c.width / 2, 6 * dpr);
    ctx.textBaseline = 'bottom';
    ctx.fillText(e[3], c.width / 2, c.height - 6 * dpr);
    ctx.textAlign = 'right';
    ctx.fillText(`${this.cursor[g.af] + 1} / ${this.vol.dims[g.af]}`, c.width - 6 * dpr, c.height - 6 * dpr);
  }

  // setCursor moves the crosshair; views whose slice changed are recomposed.
  setCursor(p) {
    const old = this.cursor;
    this.cursor = p.map((x, a) => Math.max(0, Math.min(this.vol.dims[a] - 1, x)));
    if (this.onCursor) this.onCursor(this.cursor);
    for (const name of Object.keys(this.state)) {
      const af = this.geom(name).af;
      this.redraw(name, old[af] !== this.cursor[af]);
    }
  }

  scroll(name, delta) {
    const p = this.cursor.slice(), g = this.geom(name);
    // scrolling up moves towards superior / anterior / left in every view
    const w = VIEWS[name].fixed;
    p[g.af] += delta * this.vol.sign[w];
    this.setCursor(p);
  }

  zoomAt(name, px, py, factor) {
    const s = this.state[name], c = this.canvases[name];
    const z = Math.max(0.5, Math.min(40, s.zoom * factor));
    const f = z / s.zoom;
    // keep the point under the pointer fixed: the image centre is at canvas centre + pan
    const cx = c.width / 2 + s.panX, cy = c.height / 2 + s.panY;
    s.panX += (px - cx) * (1 - f);
    s.panY += (py - cy) * (1 - f);
    s.zoom = z;
    this.redraw(name, false);
  }

  reset(name) {
    Object.assign(this.state[name], { zoom: 1, panX: 0, panY: 0 });
    this.redraw(name, false);
  }

  // jumpTo centres every view on a voxel.
  jumpTo(p) {
    for (const name of Object.keys(this.state)) Object.assign(this.state[name], { panX: 0, panY: 0 });
    this.setCursor(p);
  }

  hoverInfo(p) {
    if (!p || !this.vol) return null;
    const d = this.vol.dims, i = p[0] + d[0] * (p[1] + d[1] * p[2]);
    return { p, hu: this.vol.hu[i], label: this.labels ? this.labels[i] : 0 };
  }

  attach(name, c) {
    const pt = (ev) => {
      const r = c.getBoundingClientRect(), dpr = c.width / Math.max(1, r.width);
      return [(ev.clientX - r.left) * dpr, (ev.clientY - r.top) * dpr];
    };
    let drag = null;
    c.addEventListener('contextmenu', (ev) => ev.preventDefault());
    c.addEventListener('pointerdown', (ev) => {
      if (!this.vol) return;
      c.setPointerCapture(ev.pointerId);
      const [x, y] = pt(ev);
      // left: crosshair; shift+left or middle: pan; right: window/level
      const mode = ev.button === 2 ? 'wl' : ev.button === 1 || ev.shiftKey ? 'pan' : 'cross';
      drag = { mode, x, y, w: this.window.w, l: this.window.l };
      if (mode === 'cross') {
        const p = this.voxelAt(name, x, y);
        if (p) this.setCursor(p);
      }
    });
    c.addEventListener('pointermove', (ev) => {
      if (!this.vol) return;
      const [x, y] = pt(ev);
      this.onHover(this.hoverInfo(this.voxelAt(name, x, y)));
      if (!drag) return;
      if (drag.mode === 'cross') {
        const p = this.voxelAt(name, x, y);
        if (p) this.setCursor(p);
      } else if (drag.mode === 'pan') {
        const s = this.state[name];
        s.panX += x - drag.x;
        s.panY += y - drag.y;
        drag.x = x;
        drag.y = y;
        this.redraw(name, false);
      } else {
        const w = drag.w * Math.exp((x - drag.x) / 200);
        this.setWindow(w, drag.l - (y - drag.y) * 2);
        if (this.onWindow) this.onWindow(this.window);
      }
    });
    const end = () => { drag = null; };
    c.addEventListener('pointerup', end);
    c.addEventListener('pointercancel', end);
    c.addEventListener('pointerleave', () => this.onHover(null));
    c.addEventListener('dblclick', () => this.reset(name));
    c.addEventListener('wheel', (ev) => {
      if (!this.vol) return;
      ev.preventDefault();
      if (ev.ctrlKey || ev.metaKey) {
        const [x, y] = pt(ev);
        this.zoomAt(name, x, y, Math.exp(-ev.deltaY / 300));
      } else {
        const step = ev.shiftKey ? 5 : 1;
        this.scroll(name, ev.deltaY < 0 ? step : -step);
      }
    }, { passive: false });
    c.tabIndex = 0;
    c.addEventListener('keydown', (ev) => {
      if (!this.vol) return;
      const k = { ArrowUp: 1, ArrowDown: -1, PageUp: 10, PageDown: -10 }[ev.key];
      if (k) {
        ev.preventDefault();
        this.scroll(name, k);
      } else if (ev.key === '+' || ev.key === '=') {
        this.zoomAt(name, c.width / 2, c.height / 2, 1.25);
      } else if (ev.key === '-') {
        this.zoomAt(name, c.width / 2, c.height / 2, 0.8);
      } else if (ev.key === '0') {
        this.reset(name);
      }
    });
  }
}

// Structure index over a label map: per label voxel count, centroid and bounding box, in one
// pass; nearestVoxel finds the label's voxel closest to its centroid (a centroid can lie
// outside a curved structure such as a rib) by scanning only the bounding box.
export function indexLabels(labels, dims) {
  const n = new Float64Array(256), sx = new Float64Array(256), sy = new Float64Array(256), sz = new Float64Array(256);
  const lo = Array.from({ length: 256 }, () => [Infinity, Infinity, Infinity]);
  const hi = Array.from({ length: 256 }, () => [-1, -1, -1]);
  const [X, Y, Z] = dims;
  let i = 0;
  for (let z = 0; z < Z; z++) {
    for (let y = 0; y < Y; y++) {
      for (let x = 0; x < X; x++, i++) {
        const l = labels[i];
        if (!l) continue;
        n[l]++; sx[l] += x; sy[l] += y; sz[l] += z;
        const a = lo[l], b = hi[l];
        if (x < a[0]) a[0] = x; if (y < a[1]) a[1] = y; if (z < a[2]) a[2] = z;
        if (x > b[0]) b[0] = x; if (y > b[1]) b[1] = y; if (z > b[2]) b[2] = z;
      }
    }
  }
  const out = new Map();
  for (let l = 1; l < 256; l++) {
    if (n[l]) out.set(l, { n: n[l], c: [sx[l] / n[l], sy[l] / n[l], sz[l] / n[l]], lo: lo[l], hi: hi[l] });
  }
  return out;
}

export function nearestVoxel(labels, dims, label, info) {
  const [X, Y] = dims, c = info.c;
  let best = null, bd = Infinity;
  for (let z = info.lo[2]; z <= info.hi[2]; z++) {
    for (let y = info.lo[1]; y <= info.hi[1]; y++) {
      let i = info.lo[0] + X * (y + Y * z);
      for (let x = info.lo[0]; x <= info.hi[0]; x++, i++) {
        if (labels[i] !== label) continue;
        const d = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2;
        if (d < bd) { bd = d; best = [x, y, z]; }
      }
    }
  }
  return best;
}
