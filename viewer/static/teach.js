// The Teach view: the network's insides on the CT the user loaded. Its tabs show the network as
// a diagram (blocks, channels, resolution, parameters, FLOPs, receptive field); every block's
// channels for the slice through a clicked voxel, read back from the GPU; why a voxel got its
// label (the top classes, and how each window that covers it voted and weighed in); where the
// model hesitates (p1, or p1 - p2, over the CT); the sliding window and the preprocessing as
// storyboards; and an experiment (a cube of other HU, and what it changes). The state is kept in
// the URL's hash, so a lesson is a link. Everything is computed by the worker's Go (the same
// code as a segmentation); this module only draws.
import { clearCanvas } from './views.js';

const TABS = [
  ['network', 'Network'],
  ['trace', 'Trace a voxel'],
  ['why', 'Why this label'],
  ['doubt', 'Where it hesitates'],
  ['window', 'Sliding window'],
  ['prep', 'Preprocessing'],
  ['experiment', 'Experiment'],
];

const el = (tag, props, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'style') e.style.cssText = v; // CSSOM: the page's CSP allows no style attributes
    else e.setAttribute(k, v);
  }
  e.append(...kids.filter((k) => k !== null && k !== undefined));
  return e;
};

const fmt = (x) => (x >= 1e9 ? `${(x / 1e9).toFixed(1)} G` : x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)} k` : `${x}`);

// heat maps a value in [0, 1] to a perceptually ordered colour (dark blue, teal, yellow).
function heat(t) {
  t = Math.max(0, Math.min(1, t));
  const stops = [[13, 8, 135], [84, 2, 163], [139, 10, 165], [185, 50, 137], [219, 92, 104], [244, 136, 73], [254, 188, 43], [240, 249, 33]];
  const x = t * (stops.length - 1), i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
  return stops[i].map((c, k) => c + (stops[i + 1][k] - c) * f);
}

// drawPlane draws a w x h plane (first axis fastest) into a canvas at its own resolution, flipped
// as the axial view shows it (patient's right on the left, anterior up), through colour(v).
function drawPlane(canvas, data, w, h, colour, offset = 0) {
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d'), img = ctx.createImageData(w, h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = data[offset + x + w * y];
      const c = colour(v), o = 4 * ((w - 1 - x) + w * (h - 1 - y));
      img.data[o] = c[0];
      img.data[o + 1] = c[1];
      img.data[o + 2] = c[2];
      img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

function range(data, from = 0, to = data.length) {
  let lo = Infinity, hi = -Infinity;
  for (let i = from; i < to; i++) {
    const v = data[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return hi > lo ? [lo, hi] : [lo, lo + 1];
}

export class Teach {
  // ctx: {call(op, args) -> Promise, viewer, app (the page's state), names, colors, spacing(),
  // roi(), runArgs(extra), showLabels(labels), setWindow(w, l)}
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.state = { tab: 'network', block: 'down_layers.3', scale: 'channel', mode: 'p1', thr: 0.8, size: 20, hu: -1000 };
    this.cache = {};
    this.tabs = el('nav', { class: 'tabs', role: 'tablist' });
    for (const [id, name] of TABS) {
      this.tabs.append(el('button', { type: 'button', role: 'tab', dataset: { tab: id }, text: name, onclick: () => this.show(id) }));
    }
    this.link = el('button', { type: 'button', id: 'lessonLink', text: 'Copy the lesson link', title: 'The tab, voxel, block, scale and thresholds in one link', onclick: () => this.copyLink() });
    this.body = el('div', { class: 'teach-body', id: 'teachBody' });
    root.replaceChildren(el('div', { class: 'teach-head' }, this.tabs, this.link), this.body);
  }

  // ---- state and the lesson link ----------------------------------------------------------

  // hash is the lesson: the view, the voxel, the block, the scale and the thresholds.
  hash() {
    const s = this.state, p = new URLSearchParams();
    p.set('teach', s.tab);
    const v = this.ctx.viewer.cursor;
    if (v && this.ctx.viewer.vol) p.set('v', v.join(','));
    p.set('block', s.block);
    p.set('scale', s.scale);
    p.set('mode', s.mode);
    p.set('thr', String(s.thr));
    p.set('size', String(s.size));
    p.set('hu', String(s.hu));
    if (this.ctx.app.ct && this.ctx.app.ct.name === 'example_ct.nii.gz') p.set('ct', 'sample');
    const w = this.ctx.viewer.window;
    p.set('wl', `${Math.round(w.w)},${Math.round(w.l)}`);
    return '#' + p.toString();
  }

  copyLink() {
    const url = location.href.split('#')[0] + this.hash();
    history.replaceState(null, '', this.hash());
    if (navigator.clipboard) navigator.clipboard.writeText(url).catch(() => {});
    this.link.textContent = 'Link copied (also in the address bar)';
    setTimeout(() => (this.link.textContent = 'Copy the lesson link'), 2500);
  }

  // parseHash reads a lesson link; null when the hash is not one.
  static parseHash(h) {
    const p = new URLSearchParams((h || '').replace(/^#/, ''));
    if (!p.has('teach')) return null;
    const num = (k, lo, hi) => {
      const x = parseFloat(p.get(k));
      return Number.isFinite(x) ? Math.max(lo, Math.min(hi, x)) : undefined;
    };
    const out = {
      tab: TABS.some(([id]) => id === p.get('teach')) ? p.get('teach') : 'network',
      block: /^[a-z_]+(\.\d)?$/i.test(p.get('block') || '') ? p.get('block') : undefined,
      scale: ['channel', 'block', 'global'].includes(p.get('scale')) ? p.get('scale') : undefined,
      mode: ['p1', 'margin'].includes(p.get('mode')) ? p.get('mode') : undefined,
      thr: num('thr', 0, 1),
      size: num('size', 3, 200),
      hu: num('hu', -1024, 3071),
      sample: p.get('ct') === 'sample',
    };
    const v = (p.get('v') || '').split(',').map((x) => parseInt(x, 10));
    if (v.length === 3 && v.every((x) => Number.isInteger(x) && x >= 0)) out.voxel = v;
    const wl = (p.get('wl') || '').split(',').map(Number);
    if (wl.length === 2 && wl.every(Number.isFinite)) out.wl = wl;
    return out;
  }

  // restore applies a lesson (after its CT is loaded).
  restore(l) {
    for (const k of ['block', 'scale', 'mode', 'thr', 'size', 'hu']) if (l[k] !== undefined) this.state[k] = l[k];
    if (l.wl) this.ctx.setWindow(l.wl[0], l.wl[1]);
    if (l.voxel && this.ctx.viewer.vol) this.ctx.viewer.jumpTo(l.voxel);
    this.show(l.tab);
  }

  // gpuCall runs one of the worker's GPU runs for the tab drawn with token: one at a time (the
  // worker runs one GPU job), and not at all when the tab was redrawn while it waited (a
  // pointer that moved on, another tab): then it rejects, and the tab that is no longer shown
  // ignores it.
  gpuCall(op, args, token) {
    const run = () => {
      if (this.token !== token) throw new Error('superseded');
      return this.ctx.call(op, args);
    };
    const p = (this.queue || Promise.resolve()).catch(() => {}).then(run);
    this.queue = p;
    return p;
  }

  // ---- tabs -------------------------------------------------------------------------------

  show(tab) {
    this.state.tab = tab;
    for (const b of this.tabs.children) b.setAttribute('aria-selected', String(b.dataset.tab === tab));
    this.root.dataset.tab = tab;
    this.ctx.viewer.setConfidence(tab === 'doubt' ? this.confidence() : null);
    const token = (this.token = {});
    const body = el('div', { class: `teach-tab teach-${tab}` });
    this.body.replaceChildren(body);
    const done = (p) => p.then(() => { if (this.token === token) this.root.dataset.ready = tab; })
      .catch((e) => { if (this.token === token) { body.replaceChildren(el('p', { class: 'info teach-error', text: e.message })); this.root.dataset.ready = tab; } });
    this.root.dataset.ready = '';
    done(this[tab](body, token));
  }

  // refresh redraws the current tab (the voxel or the result changed).
  refresh() {
    if (this.root.hidden) return;
    this.show(this.state.tab);
  }

  cursorMoved() {
    if (['trace', 'why'].includes(this.state.tab)) {
      clearTimeout(this.moveTimer);
      this.moveTimer = setTimeout(() => this.refresh(), 250); // one probe per pause, not per pixel
    }
  }

  needCT() {
    if (!this.ctx.app.ct) throw new Error('Load a CT first (the sample will do): this tab shows what the network does with it.');
  }

  voxelText() {
    const v = this.ctx.viewer.cursor;
    return `voxel (${v.join(', ')})`;
  }

  // ---- Network ----------------------------------------------------------------------------

  async network(body) {
    const info = await this.ctx.call('netInfo', { roi: this.ctx.roi() });
    const sp = +this.ctx.spacing();
    const box = (b) => el('button', {
      type: 'button', class: `block ${b.name.split('.')[0]}`, dataset: { name: b.name },
      title: `${b.name}: ${b.kind}`, onclick: () => { this.state.block = b.name; this.show('trace'); },
    },
    el('b', { text: b.name }),
    el('span', { text: b.kind }),
    el('span', { text: `${b.channels} ch · ${b.size.join('×')}` }),
    el('span', { text: `${fmt(b.params)} parameters · ${(b.flops / 1e9).toFixed(1)} GFLOP` }),
    el('span', { text: `receptive field ${b.rf} voxels (${Math.round(b.rf * sp)} mm)` }));
    const byName = Object.fromEntries(info.blocks.map((b) => [b.name, b]));
    const down = info.blocks.filter((b) => b.name === 'convInit' || b.name.startsWith('down_layers'));
    const up = info.blocks.filter((b) => b.name.startsWith('up_') || b.name === 'conv_final').reverse();
    body.append(
      el('p', { class: 'info', text: `SegResNet: ${info.filters} filters at full resolution, ${info.classes} classes, ${fmt(info.params)} parameters${info.bundle ? ' (the bundle\'s shape: no weights loaded)' : ''}. One ${info.roi}³ window at ${sp} mm covers ${Math.round(info.roi * sp)} mm. The encoder (left) halves the resolution and doubles the channels at each level; the decoder (right) upsamples, adds the encoder's output of the same level (the skip) and refines; the last block turns ${info.filters} features into ${info.classes} class scores per voxel. Click a block to see its channels.` }),
      el('div', { class: 'diagram' }, el('div', { class: 'col' }, ...down.map(box)), el('div', { class: 'col up' }, ...up.map(box))),
      el('p', { class: 'help', text: 'FLOPs count the convolutions of one window (a multiply-add is 2). The receptive field is the input span that can change one output voxel through the convolutions and upsamplings; GroupNorm\'s statistics see the whole window.' }));
    if (byName[this.state.block]) body.querySelector(`[data-name="${this.state.block}"]`).classList.add('current');
  }

  // ---- Trace a voxel ------------------------------------------------------------------------

  async trace(body, token) {
    this.needCT();
    body.append(el('p', { class: 'info', text: `Probing the window around ${this.voxelText()}…` }));
    const r = await this.gpuCall('probe', this.ctx.runArgs({ voxel: this.ctx.viewer.cursor }), token);
    if (this.token !== token) return;
    this.cache.probe = r;
    const blocks = r.blocks;
    if (!blocks.some((b) => b.name === this.state.block)) this.state.block = blocks[0].name;
    const sel = el('select', { id: 'traceBlock', onchange: () => { this.state.block = sel.value; draw(); } },
      ...blocks.map((b) => el('option', { value: b.name, text: `${b.name} (${b.channels} ch, ${b.d}×${b.h})` })));
    sel.value = this.state.block;
    const scales = el('span', { class: 'row' }, ...['channel', 'block', 'global'].map((s) => el('label', {},
      el('input', { type: 'radio', name: 'scale', value: s, ...(this.state.scale === s ? { checked: '' } : {}), onchange: () => { this.state.scale = s; draw(); } }),
      ` per ${s}`)));
    const hover = el('p', { class: 'help', id: 'traceHover', text: 'Move the pointer over a channel for its value.' });
    const grid = el('div', { class: 'tiles', id: 'traceTiles' });
    const tileSize = (b) => (b.channels <= 16 ? 'large' : b.channels <= 40 ? 'medium' : 'small');
    body.replaceChildren(
      el('p', { class: 'info', text: `The window starting at (${r.window.start.join(', ')}) of the ${r.window.size.join('×')} preprocessed CT holds ${this.voxelText()} at (${r.window.local.join(', ')}); each block's channels on the axial plane through it (plane ${r.plane} at full resolution), as the GPU computed them.` }),
      el('div', { class: 'row' }, sel, scales), hover, grid);
    let gl = Infinity, gh = -Infinity;
    for (const b of blocks) {
      const [lo, hi] = range(b.data);
      gl = Math.min(gl, lo);
      gh = Math.max(gh, hi);
    }
    const draw = () => {
      const b = blocks.find((x) => x.name === this.state.block);
      const n = b.d * b.h;
      const blockRange = range(b.data);
      grid.replaceChildren();
      grid.dataset.size = tileSize(b);
      for (let c = 0; c < b.channels; c++) {
        const [lo, hi] = this.state.scale === 'channel' ? range(b.data, c * n, (c + 1) * n) : this.state.scale === 'block' ? blockRange : [gl, gh];
        const cv = el('canvas', { class: 'tile', title: `channel ${c}`, dataset: { channel: c } });
        drawPlane(cv, b.data, b.d, b.h, (v) => heat((v - lo) / (hi - lo)), c * n);
        // the traced voxel, at the block's resolution (drawn flipped as drawPlane draws)
        const mx = Math.floor((r.window.local[0] * b.d) / r.window.roi[0]), my = Math.floor((r.window.local[1] * b.h) / r.window.roi[1]);
        const g = cv.getContext('2d');
        g.fillStyle = 'rgba(0,255,255,0.9)';
        g.fillRect(b.d - 1 - mx, b.h - 1 - my, 1, 1);
        cv.addEventListener('pointermove', (ev) => {
          const rc = cv.getBoundingClientRect();
          const x = b.d - 1 - Math.floor(((ev.clientX - rc.left) / rc.width) * b.d);
          const y = b.h - 1 - Math.floor(((ev.clientY - rc.top) / rc.height) * b.h);
          if (x < 0 || y < 0 || x >= b.d || y >= b.h) return;
          hover.textContent = `${b.name}, channel ${c}, at (${x}, ${y}): ${b.data[c * n + x + b.d * y].toPrecision(4)} (scale ${lo.toPrecision(3)} to ${hi.toPrecision(3)})`;
        });
        grid.append(cv);
      }
    };
    draw();
  }

  // ---- Why this label -----------------------------------------------------------------------

  async why(body, token) {
    this.needCT();
    body.append(el('p', { class: 'info', text: `Running every window that covers ${this.voxelText()}…` }));
    const r = await this.gpuCall('votes', this.ctx.runArgs({ voxel: this.ctx.viewer.cursor }), token);
    if (this.token !== token) return;
    const names = this.ctx.names, colors = this.ctx.colors;
    const softmax = (l) => {
      const m = Math.max(...l), e = l.map((x) => Math.exp(x - m)), s = e.reduce((a, b) => a + b, 0);
      return e.map((x) => x / s);
    };
    this.cache.votes = r;
    const p = softmax([...r.blended]);
    const top = p.map((x, k) => [x, k]).sort((a, b) => b[0] - a[0]).slice(0, 5);
    const bar = (frac, k, text) => el('div', { class: 'bar', dataset: { label: k } },
      el('span', { class: 'name', text: (names[k] || `class ${k}`).replaceAll('_', ' ') }),
      el('span', { class: 'fill', style: `width:${(100 * frac).toFixed(1)}%;background:rgb(${(colors[k] || [200, 200, 200]).join(',')})` }),
      el('span', { class: 'val', text }));
    const wsum = r.votes.reduce((a, v) => a + v.weight, 0);
    const rows = r.votes.map((v) => {
      const pv = softmax([...v.logits]);
      const best = pv.indexOf(Math.max(...pv));
      return el('tr', {},
        el('td', { text: v.start.join(', ') }),
        el('td', { text: `${(100 * v.weight / wsum).toFixed(1)} %` }),
        el('td', { text: (names[best] || best).replaceAll('_', ' ') }),
        el('td', { text: pv[best].toFixed(3) }),
        el('td', { text: pv[top[0][1]].toFixed(3) }));
    });
    body.replaceChildren(
      el('p', { class: 'info', text: `${this.voxelText()}: the blend of ${r.votes.length} window(s) gives these classes the highest probability (softmax of the blended scores).` }),
      el('div', { class: 'bars', id: 'whyBars' }, ...top.map(([x, k]) => bar(x, k, x.toFixed(3)))),
      el('p', { class: 'info', text: 'How each covering window voted: its weight at this voxel (the gaussian map, normalised over the windows), its own top class, and what it gives the final class.' }),
      el('table', { class: 'votes', id: 'whyVotes' }, el('tr', {}, ...['window start', 'weight', 'its top class', 'its p', `p(${(names[top[0][1]] || '').replaceAll('_', ' ')})`].map((h) => el('th', { text: h }))), ...rows));
  }

  // ---- Where it hesitates -------------------------------------------------------------------

  confidence() {
    const r = this.ctx.app.result;
    if (!r || !r.p1) return null;
    return { p1: r.p1, p2: r.p2, second: r.second, mode: this.state.mode, thr: Math.round(this.state.thr * 255) };
  }

  async doubt(body) {
    const r = this.ctx.app.result;
    if (!r || !r.p1) {
      body.append(el('p', { class: 'info', text: 'Segment the CT in this browser (WebGPU) to see where the model hesitates: the run then also keeps, for every voxel, the probability of the chosen label (p1) and of the runner-up (p2).' }));
      return;
    }
    const apply = () => this.ctx.viewer.setConfidence(this.confidence());
    const modes = el('span', { class: 'row' }, ...[['p1', 'p1, the chosen label\'s probability'], ['margin', 'p1 - p2, the lead over the runner-up']].map(([m, t]) => el('label', {},
      el('input', { type: 'radio', name: 'doubtMode', value: m, ...(this.state.mode === m ? { checked: '' } : {}), onchange: () => { this.state.mode = m; apply(); } }), ` ${t}`)));
    const out = el('output', { id: 'thrOut', text: this.state.thr.toFixed(2) });
    const slider = el('input', {
      type: 'range', id: 'thr', min: '0', max: '1', step: '0.01', value: String(this.state.thr),
      oninput: () => { this.state.thr = +slider.value; out.textContent = this.state.thr.toFixed(2); apply(); },
    });
    const stats = (r.stats || []).filter((s) => s.meanP1 !== undefined).sort((a, b) => a.meanP1 - b.meanP1).slice(0, 10);
    body.append(
      el('p', { class: 'info', text: 'On the slice views: voxels under the threshold in their candidates\' colours, mixed by their shares (a voxel torn between two structures shows both); the rest faint. p1 comes from the blended scores of the windows, computed in the same GPU pass as the labels.' }),
      modes, el('label', { class: 'row' }, 'threshold ', slider, out),
      el('p', { class: 'info', text: 'The least certain structures (mean p1 over their voxels):' }),
      el('div', { class: 'bars', id: 'doubtList' }, ...stats.map((s) => el('div', { class: 'bar', dataset: { label: s.label } },
        el('span', { class: 'name', text: s.name.replaceAll('_', ' ') }),
        el('span', { class: 'fill', style: `width:${(100 * s.meanP1).toFixed(1)}%;background:rgb(${(this.ctx.colors[s.label] || [200, 200, 200]).join(',')})` }),
        el('span', { class: 'val', text: s.meanP1.toFixed(3) })))));
    apply();
  }

  // ---- Sliding window -----------------------------------------------------------------------

  async window(body, token) {
    this.needCT();
    const r = await this.ctx.call('windowStory', { spacing: +this.ctx.spacing(), roi: this.ctx.roi() });
    if (this.token !== token) return;
    const [D, H] = r.size;
    const scan = el('canvas', { class: 'story big', id: 'windowScan' });
    const imp = el('canvas', { class: 'story' }), gs = el('canvas', { class: 'story' }), cs = el('canvas', { class: 'story' });
    const [plo, phi] = range(r.pre);
    const gray = (v) => { const g = 255 * (v - plo) / (phi - plo); return [g, g, g]; };
    drawPlane(imp, r.importance, r.roi[0], r.roi[1], (v) => heat(v / 0.9106));
    const [gl, gh] = range(r.gaussian), [cl, ch] = range(r.constant);
    drawPlane(gs, r.gaussian, D, H, (v) => heat((v - gl) / (gh - gl)));
    drawPlane(cs, r.constant, D, H, (v) => heat((v - cl) / (ch - cl)));
    // the windows that cover the middle slice, in the order the inferer runs them
    const w = r.slice + r.padBefore[2];
    const wins = [];
    for (const a of r.starts[0]) for (const b of r.starts[1]) for (const c of r.starts[2]) if (w >= c && w < c + r.roi[2]) wins.push([a, b]);
    let k = -1;
    const drawScan = () => {
      drawPlane(scan, r.pre, D, H, gray);
      const ctx = scan.getContext('2d');
      ctx.lineWidth = 1;
      wins.forEach(([a, b], i) => {
        // screen x = D-1-d, y = H-1-h (as drawPlane flips)
        const x0 = D - (a - r.padBefore[0]) - r.roi[0], y0 = H - (b - r.padBefore[1]) - r.roi[1];
        ctx.strokeStyle = i === k ? 'rgba(255,220,0,1)' : 'rgba(74,163,255,0.5)';
        ctx.lineWidth = i === k ? 2 : 1;
        ctx.strokeRect(x0 + 0.5, y0 + 0.5, r.roi[0] - 1, r.roi[1] - 1);
      });
    };
    drawScan();
    const play = el('button', {
      type: 'button', id: 'windowPlay', text: 'Step through the windows', onclick: () => {
        clearInterval(this.playing);
        k = -1;
        this.playing = setInterval(() => {
          if (this.token !== token || ++k >= wins.length) { clearInterval(this.playing); k = -1; }
          drawScan();
        }, 600);
      },
    });
    body.append(
      el('p', { class: 'info', text: `${r.windows} windows of ${r.roi.join('×')} voxels step by ${r.step.join(', ')} over the ${r.size.join('×')} preprocessed CT (overlap 0.25; an axis shorter than a window is padded by repeating its edge). ${wins.length} of them cover the middle axial slice shown here.` }),
      el('div', { class: 'row' }, play),
      el('figure', {}, scan, el('figcaption', { text: 'The middle axial slice of the network\'s input, with the windows that cover it' })),
      el('div', { class: 'row wrap' },
        el('figure', {}, imp, el('figcaption', { text: 'Each window\'s gaussian weights (σ = 0.125 of its size, floor 0.001): its centre counts, its edges barely' })),
        el('figure', {}, gs, el('figcaption', { text: 'Sum of the covering windows\' gaussian weights: smooth, so the blend has no seams' })),
        el('figure', {}, cs, el('figcaption', { text: 'With constant blending the sum counts the windows: it jumps at every window\'s edge, where seams appear' }))));
  }

  // ---- Preprocessing ------------------------------------------------------------------------

  async prep(body, token) {
    this.needCT();
    const r = await this.ctx.call('preprocessStory', { spacing: +this.ctx.spacing() });
    if (this.token !== token) return;
    const vw = this.ctx.viewer.window, st = r.stats;
    const huGray = (v) => { const g = 255 * (v - (vw.l - vw.w / 2)) / vw.w; return [g, g, g]; };
    // the network's input through the same window, its values taken back to HU: the picture is
    // unchanged, only the numbers are
    const normGray = (v) => huGray((((v + 1) / 2) * (st.max - st.min) + st.min) * st.std + st.mean);
    const figs = r.steps.map((s, i) => {
      const c = el('canvas', { class: 'story', dataset: { step: i } });
      drawPlane(c, s.slice, s.dims[0], s.dims[1], i === 3 ? normGray : huGray);
      return el('figure', {}, c, el('figcaption', { text: `${i + 1}. ${s.name}: ${s.dims.join('×')} voxels of ${s.spacing.map((x) => x.toFixed(2)).join('×')} mm, axes ${s.codes}` }));
    });
    const hist = (h, title) => {
      const c = el('canvas', { class: 'hist' });
      c.width = 256;
      c.height = 80;
      const ctx = c.getContext('2d'), m = Math.max(...h.counts.map((x) => Math.log1p(x)));
      ctx.fillStyle = '#111';
      ctx.fillRect(0, 0, 256, 80);
      ctx.fillStyle = '#4aa3ff';
      const bw = 256 / h.counts.length;
      h.counts.forEach((x, i) => { const hh = 78 * Math.log1p(x) / m; ctx.fillRect(i * bw, 80 - hh, Math.max(1, bw - 0.5), hh); });
      return el('figure', {}, c, el('figcaption', { text: `${title}: ${h.lo} to ${h.hi} (log counts)` }));
    };
    body.append(
      el('p', { class: 'info', text: 'The bundle\'s preprocessing, step by step, on this CT. Each picture is the middle slice along the array\'s last axis: before reorientation that axis need not be the body\'s vertical one.' }),
      el('div', { class: 'row wrap' }, ...figs),
      el('div', { class: 'row wrap' }, hist(r.hu, 'HU after resampling'), hist(r.norm, 'the network\'s input')),
      el('p', { class: 'info', text: `NormalizeIntensity(nonzero=True): mean ${st.mean.toFixed(1)} HU and standard deviation ${st.std.toFixed(1)} over the ${st.nonzero} non-zero voxels; the ${r.zeros} voxels that are exactly 0 after resampling stay 0, which ScaleIntensity then maps with the rest to [-1, 1] (so they enter the network as the mean HU). Which voxels are exactly 0 depends on the resampling's float64 round-off, which ctseg repeats exactly.` }));
  }

  // ---- Experiment ---------------------------------------------------------------------------

  async experiment(body, token) {
    this.needCT();
    const r = this.ctx.app.result;
    const size = el('input', { type: 'number', id: 'cubeSize', min: '3', max: '200', step: '1', value: String(this.state.size), onchange: () => (this.state.size = +size.value) });
    const hu = el('input', { type: 'number', id: 'cubeHU', min: '-1024', max: '3071', step: '10', value: String(this.state.hu), onchange: () => (this.state.hu = +hu.value) });
    const presets = el('span', { class: 'row' }, ...[['air', -1000], ['fat', -100], ['water', 0], ['soft tissue', 40], ['bone', 1000]].map(([n, v]) => el('button', { type: 'button', text: n, onclick: () => { hu.value = v; this.state.hu = v; } })));
    const out = el('div', { id: 'experimentOut' });
    const run = el('button', {
      type: 'button', id: 'occludeBtn', class: 'primary', text: 'Put the cube at the crosshair and re-run',
      onclick: async () => {
        run.disabled = true;
        out.replaceChildren(el('p', { class: 'info', text: 'Running the windows the cube touches…' }));
        try {
          const e = await this.gpuCall('occlude', this.ctx.runArgs({ voxel: this.ctx.viewer.cursor, sizeMM: this.state.size, hu: this.state.hu }), token);
          if (this.token !== token) return;
          this.showExperiment(out, e);
        } catch (err) {
          out.replaceChildren(el('p', { class: 'info teach-error', text: err.message }));
        } finally {
          run.disabled = false;
          this.root.dataset.experiment = 'done';
        }
      },
    });
    if (!r) run.disabled = true;
    body.append(...[
      el('p', { class: 'info', text: 'Replace a cube of the CT by another tissue and see which labels change. The cube enters the network with the CT\'s own normalisation, so only the windows it touches see another input (0 HU enters as the CT\'s own exact zeros do: as its mean); ctseg re-runs those (and the windows that share voxels with them, whose blend they join) and keeps every other label.' }),
      r ? null : el('p', { class: 'info', text: 'Segment the CT first: the experiment compares with that result.' }),
      el('div', { class: 'row' }, el('label', {}, 'cube ', size, ' mm'), el('label', {}, 'HU ', hu)), presets,
      el('div', { class: 'row' }, run), out].filter(Boolean));
  }

  showExperiment(out, e) {
    const names = this.ctx.names;
    const rows = e.changes.slice(0, 12).map((c) => el('tr', {},
      el('td', { text: (names[c.label] || c.label).replaceAll('_', ' ') }),
      el('td', { text: `${c.before}` }), el('td', { text: `${c.after}` }),
      el('td', { text: `${c.after - c.before > 0 ? '+' : ''}${c.after - c.before}` })));
    // the new label where it changed (a voxel that became background shows as none)
    const before = this.ctx.app.result.labels, changed = new Uint8Array(e.labels.length);
    for (let i = 0; i < changed.length; i++) if (e.labels[i] !== before[i]) changed[i] = e.labels[i];
    this.cache.experiment = e;
    const showNew = el('input', { type: 'checkbox', id: 'showChanged' });
    showNew.addEventListener('change', () => this.ctx.showLabels(showNew.checked ? changed : null));
    out.replaceChildren(
      el('p', { class: 'info', id: 'experimentSummary', text: `The cube touched ${e.touched} of ${e.windows} windows; ${e.rerun} were re-run. ${e.changed} voxels changed label, all inside the touched windows.` }),
      el('label', { class: 'row' }, showNew, ' show only the voxels that changed, in their new labels'),
      el('table', { class: 'votes' }, el('tr', {}, ...['structure', 'voxels before', 'after', 'change'].map((h) => el('th', { text: h }))), ...rows));
  }
}
