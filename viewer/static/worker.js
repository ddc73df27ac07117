// The page's worker: it instantiates the Go program (gen/ctseg.wasm), owns the GPUDevice and
// runs the segmentation, so the page stays responsive and does only the viewing. Messages in:
// {id, op, ...}; out: {id, ok, value | error: {name, message}}, plus {type: 'progress' |
// 'phase' | 'exit'} events. Nothing here touches the network except loading the app's own
// wasm.
'use strict';

importScripts('gen/wasm_exec.js');

const post = (m, transfer) => self.postMessage(m, transfer || []);

const ready = new Promise((resolve, reject) => {
  self.ctsegReady = resolve;
  const go = new Go();
  WebAssembly.instantiateStreaming(fetch('gen/ctseg.wasm'), go.importObject)
    .then((result) => {
      // wgpu's js backend (Queue.WriteBuffer) reads the wasm memory via globalThis.wasm.
      self.wasm = result;
      return go.run(result.instance);
    })
    .then(() => post({ type: 'exit', message: 'the ctseg program stopped' }))
    .catch((e) => {
      reject(e);
      post({ type: 'exit', message: String(e && e.message || e) });
    });
});

function named(name, message) {
  const e = new Error(message);
  e.name = name;
  return e;
}

// openDevice creates the GPUDevice with the limits the network needs, as large as the
// adapter allows (the Go side cannot: wgpu's js backend ignores RequiredLimits), and queues
// its errors for Go.
async function openDevice() {
  if (!self.navigator.gpu) throw named('NoWebGPU', 'no WebGPU in this browser');
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw named('NoAdapter', 'no WebGPU adapter');
  const keys = [
    'maxStorageBufferBindingSize', 'maxBufferSize', 'maxStorageBuffersPerShaderStage',
    'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX',
    'maxComputeWorkgroupSizeY', 'maxComputeWorkgroupSizeZ', 'maxComputeWorkgroupsPerDimension',
    'maxBindGroups', 'maxUniformBufferBindingSize', 'maxBindingsPerBindGroup',
  ];
  const requiredLimits = {};
  for (const k of keys) if (adapter.limits[k] !== undefined) requiredLimits[k] = adapter.limits[k];
  // No features: f16 activations are packed with pack2x16float, which needs none.
  const device = await adapter.requestDevice({ label: 'ctseg', requiredLimits, requiredFeatures: [] });
  const errors = [];
  device.addEventListener('uncapturederror', (ev) => {
    const e = ev.error;
    const kind = e instanceof GPUOutOfMemoryError ? 'out of memory' : e instanceof GPUValidationError ? 'validation error' : 'internal error';
    errors.push(`WebGPU ${kind}: ${e.message}`);
  });
  device.lost.then((info) => {
    if (info.reason !== 'destroyed') errors.push(`the GPU device was lost: ${info.message || info.reason}`);
  });
  const limits = {};
  for (const k of keys) if (device.limits[k] !== undefined) limits[k] = device.limits[k];
  const ai = adapter.info || {};
  let name = [ai.vendor, ai.architecture, ai.device, ai.description].filter(Boolean).join(' ') || 'WebGPU adapter';
  const software = !!(adapter.isFallbackAdapter || ai.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe/i.test(name));
  if (software) name += ' (software)';
  return {
    device, limits, adapter: name, software,
    takeError: () => (errors.length ? errors.shift() : null),
    // Test-only (?fault=lose-device): lose the device as a crashed driver would.
    lose() { errors.push('the GPU device was lost: test fault'); device.destroy(); },
  };
}

// Tiles tuned on an adapter (ctsegGo.tune) are kept in IndexedDB, which workers have (they
// have no localStorage), keyed by adapter, storage precision and window.
function tuningKey(adapter, precision, roi) {
  return `${adapter}|${precision === 'f32' ? 'f32' : 'f16'}|${roi || 96}`;
}

function tuningDB() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open('ctseg-tuning', 1);
    r.onupgradeneeded = () => r.result.createObjectStore('tiles');
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

async function tuningOp(mode, key, value) {
  const db = await tuningDB();
  try {
    return await new Promise((resolve, reject) => {
      const store = db.transaction('tiles', mode).objectStore('tiles');
      const q = mode === 'readonly' ? store.get(key) : store.put(value, key);
      q.onsuccess = () => resolve(q.result);
      q.onerror = () => reject(q.error);
    });
  } finally {
    db.close();
  }
}

// tunedTiles never fails a run: tiles change speed, not results.
async function tunedTiles(key) {
  try {
    const v = await tuningOp('readonly', key);
    return (v && typeof v.tiles === 'string') ? v.tiles : '';
  } catch (e) {
    return '';
  }
}

// teachGPU is the device the Teach view's runs share: kept between them (Go keeps the network
// built on it), destroyed before a segmentation or a tuning needs the GPU, and after a failed
// run.
let teachGPU = null;

async function dropTeachGPU() {
  if (!teachGPU) return;
  await ctsegGo.releaseTeach(); // Busy while a Teach run is still going: the caller fails alike
  teachGPU.device.destroy();
  teachGPU = null;
}

async function teachRun(op, m) {
  if (!teachGPU) teachGPU = await openDevice();
  const gpu = teachGPU;
  const tiles = await tunedTiles(tuningKey(gpu.adapter, m.precision, m.roi));
  try {
    return await ctsegGo[op](gpu.device, {
      ...m, tiles, limits: gpu.limits, adapter: gpu.adapter, software: gpu.software, takeError: gpu.takeError, roi: m.roi || 0,
    });
  } catch (e) {
    if (e && e.name !== 'Busy' && teachGPU === gpu) {
      teachGPU = null;
      gpu.device.destroy();
    }
    throw e;
  }
}

// cancelRequested is set by a cancel message and read by Go between windows. It is reset when
// a segment message arrives, so a cancel can never be lost to a run that has not started yet.
let cancelRequested = false;

const ops = {
  async labelTable() {
    return ctsegGo.labelTable();
  },
  async loadCT(m) {
    const v = m.files
      ? await ctsegGo.loadSeries(m.files.map((b) => new Uint8Array(b)), m.names, m.name, m.series || '',
        (done, total) => post({ type: 'loadProgress', done, total }))
      : await ctsegGo.loadCT(new Uint8Array(m.bytes), m.name);
    return v.hu ? [v, [v.hu.buffer]] : [v]; // without hu: a list of series to choose from
  },
  async loadLabels(m) {
    const v = await ctsegGo.loadLabels(new Uint8Array(m.bytes), m.name, m.spacing, m.p1);
    return [v, v.p1 ? [v.labels.buffer, v.p1.buffer] : [v.labels.buffer]];
  },
  async loadWeights(m) {
    return ctsegGo.loadWeights(new Uint8Array(m.bytes), m.name);
  },
  async segment(m) {
    await dropTeachGPU();
    const gpu = await openDevice();
    if (cancelRequested) {
      gpu.device.destroy();
      throw named('Cancelled', 'cancelled');
    }
    post({ type: 'phase', text: `GPU: ${gpu.adapter}` });
    // Test-only (?fault=small-adapter): an adapter far too small for the model.
    if (m.fault === 'small-adapter') gpu.limits.maxStorageBufferBindingSize = gpu.limits.maxBufferSize = 64 << 10;
    const tiles = await tunedTiles(tuningKey(gpu.adapter, m.precision, m.roi));
    try {
      const v = await ctsegGo.segment(gpu.device, {
        tiles,
        limits: gpu.limits,
        adapter: gpu.adapter,
        software: gpu.software,
        takeError: gpu.takeError,
        spacing: m.spacing,
        roi: m.roi || 0,
        precision: m.precision, // f16 unless 'f32'
        confidence: !!m.confidence,
        progress: (done, total) => {
          if (m.fault === 'lose-device' && done >= 1) gpu.lose();
          post({ type: 'progress', done, total });
        },
        phase: (text) => post({ type: 'phase', text }),
        cancelled: () => cancelRequested,
      });
      return [v, [v.labels.buffer, ...(v.p1 ? [v.p1.buffer, v.p2.buffer, v.second.buffer] : [])]];
    } finally {
      gpu.device.destroy();
    }
  },
  // The Teach view's runs (probe, votes, occlude): each on a device of its own, as a segment.
  async probe(m) {
    const v = await teachRun('probe', m);
    return [v, v.blocks.map((b) => b.data.buffer)];
  },
  async votes(m) {
    const v = await teachRun('votes', m);
    return [v, [v.blended.buffer, ...v.votes.map((x) => x.logits.buffer)]];
  },
  async occlude(m) {
    const v = await teachRun('occlude', m);
    return [v, [v.labels.buffer]];
  },
  async tune(m) {
    await dropTeachGPU();
    const gpu = await openDevice();
    post({ type: 'phase', text: `Tuning on ${gpu.adapter}` });
    try {
      const v = await ctsegGo.tune(gpu.device, {
        limits: gpu.limits,
        adapter: gpu.adapter,
        software: gpu.software,
        takeError: gpu.takeError,
        precision: m.precision,
        roi: m.roi || 0,
        tiles: m.tiles || '', // test-only: fewer candidates
        phase: (text) => post({ type: 'phase', text }),
      });
      await tuningOp('readwrite', tuningKey(gpu.adapter, m.precision, m.roi), { ...v, date: Date.now() });
      return v;
    } finally {
      gpu.device.destroy();
    }
  },
  async labelsNifti() {
    const b = await ctsegGo.labelsNifti();
    return [b, [b.buffer]];
  },
  async statsCSV() {
    return ctsegGo.statsCSV();
  },
  async dicomSeg() {
    const r = await ctsegGo.dicomSeg();
    return [r, r.parts.map((p) => p.buffer)];
  },
  async netInfo(m) {
    return ctsegGo.netInfo(m);
  },
  async preprocessStory(m) {
    const v = await ctsegGo.preprocessStory(m);
    return [v, v.steps.map((s) => s.slice.buffer)];
  },
  async windowStory(m) {
    const v = await ctsegGo.windowStory(m);
    return [v, [v.importance.buffer, v.gaussian.buffer, v.constant.buffer, v.pre.buffer]];
  },
  async ctNifti() {
    const parts = await ctsegGo.ctNifti();
    return [parts, parts.map((p) => p.buffer)];
  },
};

self.onmessage = async (ev) => {
  const m = ev.data;
  if (m.op === 'cancel') {
    cancelRequested = true;
    return;
  }
  if (m.op === 'segment') cancelRequested = false;
  try {
    await ready;
    const r = await ops[m.op](m);
    const [value, transfer] = Array.isArray(r) ? r : [r, []];
    post({ id: m.id, ok: true, value }, transfer);
  } catch (e) {
    post({ id: m.id, ok: false, error: { name: e && e.name || 'Error', message: String(e && e.message || e) } });
  }
};
