// The page: inputs, the model, the run and its progress, the legend and the downloads. The
// segmentation runs in worker.js (Go compiled to wasm, WebGPU); this thread only views. No
// image or weight byte is sent anywhere: files are read here and handed to the worker. The one
// exception is the desktop app (`ctseg app`, which serves this page on 127.0.0.1): there the
// user may run the network natively, and the CT goes to that local process, never further.
import { Viewer, indexLabels, nearestVoxel } from './views.js';
import { Render3D } from './render3d.js';
import { Teach } from './teach.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// Test-only: a smaller sliding window (?roi=32) keeps the browser end-to-end test short on a
// software GPU; it is compared with `ctseg segment --roi 32`.
const testROI = Math.max(0, parseInt(params.get('roi') || '0', 10) || 0);
// Test-only: ?fault=F1,F2 gives the first runs a fault each, to test the ways back:
// small-adapter (the device's limits look tiny) and lose-device (the GPU is lost mid-run).
const testFaults = (params.get('fault') || '').split(',').filter(Boolean);
// Test-only: ?tunetiles=2x8x4,8x8x4c tunes among fewer tiles, to keep the test short.
const testTuneTiles = params.get('tunetiles') || '';

const WEBGPU_BROWSERS = 'WebGPU works in Chrome and Edge 113 or later on Windows, macOS and ChromeOS (on Linux, turn on chrome://flags/#enable-unsafe-webgpu), Chrome 121+ on Android, Safari 26+ on macOS and iOS, and Firefox 141+ on Windows.';

const app = {
  worker: null,
  nextId: 1,
  calls: new Map(),
  ct: null, // {source: Blob, name, info}
  weights: null, // {source: Blob, name, info, from}
  result: null,
  index: null,
  names: [],
  colors: [],
  running: false,
  openingLabels: false,
  acceptNotCT: false,
  webgpu: null, // null: unknown, '' ok, else the message
  native: null, // served by ctseg app with a session: {csrf, caps, run: the native run in progress}
};

const viewer = new Viewer({ axial: $('axial'), coronal: $('coronal'), sagittal: $('sagittal') }, showHover);
viewer.onWindow = (w) => { $('winW').value = Math.round(w.w); $('winL').value = Math.round(w.l); };
const view3d = new Render3D($('view3d'), viewer, showHover);
const teach = new Teach($('teach'), {
  call: (op, args) => call(op, args),
  viewer,
  app,
  get names() { return app.names; },
  get colors() { return app.colors; },
  spacing: () => $('spacing').value,
  roi: () => testROI || 96,
  // the settings of a run, for the probes and the experiment
  runArgs: (extra) => ({ ...extra, spacing: +$('spacing').value, precision: $('precision').value, roi: testROI }),
  showLabels: (labels) => viewer.setLabels(labels || (app.result && app.result.labels)),
  setWindow: (w, l) => {
    viewer.setWindow(w, l);
    $('winW').value = Math.round(w);
    $('winL').value = Math.round(l);
  },
});
// For the end-to-end tests: what the page shows, read without scraping pixels.
window.ctsegTest = {
  cursor: () => viewer.cursor,
  jump: (v) => viewer.jumpTo(v), // as a click on that voxel
  teachState: () => ({ ...teach.state }),
  teachCache: () => teach.cache, // the last probe, votes and experiment, as the worker sent them
  result: () => app.result,
  confidenceShown: () => !!viewer.conf,
  // base64 of a typed array's bytes (a test reads arrays through it)
  base64: (a) => {
    const b = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    let s = '';
    for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode.apply(null, b.subarray(i, i + 8192));
    return btoa(s);
  },
};
viewer.onCursor = () => teach.cursorMoved();

// setTeach opens or closes the Teach view.
function setTeach(on) {
  document.body.dataset.mode = on ? 'teach' : 'view';
  $('teach').hidden = !on;
  $('teachBtn').setAttribute('aria-pressed', String(on));
  if (on) teach.show(teach.state.tab);
  else viewer.setConfidence(null);
  viewer.redrawAll(false);
}
$('teachBtn').addEventListener('click', () => setTeach($('teach').hidden));

function setState(s) { document.body.dataset.state = s; }

// message shows text (kind: error, warn); owner names who set it, so that a later success of
// the same owner clears only its own message.
function message(text, kind, retry, owner) {
  app.messageOwner = owner || '';
  const m = $('message');
  m.hidden = !text;
  m.textContent = text || '';
  m.className = kind || 'error';
  $('retry').hidden = !retry;
  if (retry) {
    $('retryBtn').hidden = !retry.includes('retry');
    $('lowresBtn').hidden = !retry.includes('lowres');
    $('anywayBtn').hidden = !retry.includes('anyway');
  }
}

// ---- worker ----------------------------------------------------------------------------

function startWorker() {
  const w = new Worker('worker.js');
  w.onmessage = (ev) => {
    const m = ev.data;
    if (m.type === 'progress') return onProgress(m.done, m.total);
    if (m.type === 'phase') return ($('progressText').textContent = m.text);
    if (m.type === 'loadProgress') {
      if (document.body.dataset.state === 'loading') $('ctInfo').textContent = `Reading ${app.loading}… ${m.done} of ${m.total} images`;
      return;
    }
    if (m.type === 'exit') return onWorkerExit(m.message);
    const c = app.calls.get(m.id);
    if (!c) return;
    app.calls.delete(m.id);
    if (m.ok) c.resolve(m.value);
    else c.reject(Object.assign(new Error(m.error.message), { name: m.error.name }));
  };
  w.onerror = (ev) => onWorkerExit(ev.message || 'the worker failed to start');
  app.worker = w;
}

function call(op, args, transfer) {
  const id = app.nextId++;
  return new Promise((resolve, reject) => {
    app.calls.set(id, { resolve, reject });
    app.worker.postMessage({ id, op, ...args }, transfer || []);
  });
}

// onWorkerExit restarts a worker whose Go program died (e.g. out of memory) and gives it the
// CT and weights again from the page's own copies, so the user can retry without reloading.
async function onWorkerExit(why) {
  for (const c of app.calls.values()) c.reject(Object.assign(new Error(`the segmentation worker stopped: ${why}`), { name: 'WorkerExit' }));
  app.calls.clear();
  app.worker.terminate();
  app.restarts = (app.restarts || 0) + 1;
  if (app.restarts > 3) {
    message(`The segmentation worker keeps failing (${why}). Reload the page; if that does not help, this browser cannot run the app.`);
    setState('error');
    return;
  }
  startWorker();
  $('dlLabels').disabled = $('dlStats').disabled = $('dlSeg').disabled = true; // the new worker has no result
  try {
    // Through the load queue: a CT chosen meanwhile is loaded after this one, not before.
    if (app.ct) await queued(async () => call('loadCT', ...await ctMessage(app.ct.source, app.ct.name, app.ct.series)));
    if (app.weights) await call('loadWeights', { bytes: await app.weights.source.arrayBuffer(), name: app.weights.name });
  } catch (e) {
    message(`The segmentation worker stopped (${why}) and could not be restarted: ${e.message}. Reload the page.`);
  }
}

// ---- WebGPU check ----------------------------------------------------------------------

// checkWebGPU finds the browser's GPU; without one it says so, unless the desktop app can run
// the network natively instead (reported by showNative).
async function checkWebGPU() {
  const s = $('gpuStatus');
  if (!navigator.gpu) {
    app.webgpu = `This browser has no WebGPU, which ctseg needs to run the network on your GPU. ${WEBGPU_BROWSERS} The desktop app (ctseg app) runs it on this computer's GPU instead. You can still look at CTs here.`;
    s.textContent = 'No WebGPU in this browser';
    s.className = 'gpu bad';
    return;
  }
  let adapter = null;
  try { adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' }); } catch (e) { /* reported below */ }
  if (!adapter) {
    app.webgpu = 'WebGPU is present but gives no GPU adapter: hardware acceleration may be turned off in the browser settings, or the GPU driver is blocked (see chrome://gpu). ' + WEBGPU_BROWSERS;
    s.textContent = 'WebGPU: no adapter';
    s.className = 'gpu bad';
    return;
  }
  app.webgpu = '';
  const ai = adapter.info || {};
  const name = [ai.vendor, ai.architecture, ai.device, ai.description].filter(Boolean).join(' ') || 'WebGPU adapter';
  const mb = (x) => `${Math.round(x / (1 << 20))} MiB`;
  s.textContent = `GPU: ${name}${adapter.isFallbackAdapter || ai.isFallbackAdapter ? ' (software, slow)' : ''} · max buffer ${mb(adapter.limits.maxBufferSize)}`;
  s.className = 'gpu ok';
  s.title = `maxStorageBufferBindingSize ${adapter.limits.maxStorageBufferBindingSize}, maxBufferSize ${adapter.limits.maxBufferSize}`;
}

// ---- the desktop app: native runs ------------------------------------------------------

// apiFetch is fetch for the app's own API; under ctseg app every API call carries the
// session's CSRF token (the session cookie goes along by itself).
function apiFetch(path, opts = {}) {
  const headers = new Headers(opts.headers || {});
  if (app.native) headers.set('X-CSRF-Token', app.native.csrf);
  return fetch(path, { ...opts, headers, credentials: 'same-origin', cache: 'no-store' });
}

// detectNative asks whether ctseg app serves this page (with a session from its launch link),
// and what its native side can run.
async function detectNative() {
  let r;
  try { r = await fetch('api/session', { credentials: 'same-origin', cache: 'no-store' }); } catch (e) { return; }
  if (r.status === 404) return; // ctseg serve, or a static host: this browser only
  if (!r.ok) {
    app.nativeMissing = 'This page was opened without its launch link, so it cannot use this computer\'s GPU: run ctseg app again (it opens the app with a new link).';
    return;
  }
  const { csrf } = await r.json();
  app.native = { csrf, caps: null };
  const c = await apiFetch('api/capabilities');
  if (!c.ok) { app.native = null; return; }
  app.native.caps = await c.json();
}

function nativeLabel() {
  const c = app.native.caps;
  return c.device === 'cpu' ? `this computer's processor (native: ${c.adapter.name})` : `this computer's GPU (native: ${c.adapter.name})`;
}

// showNative offers "Run on" when ctseg app can run natively, defaulting to WebGPU where the
// browser has it and to native where it does not.
function showNative() {
  if (!app.native) {
    if (app.webgpu) message(app.nativeMissing || app.webgpu, 'error');
    return;
  }
  $('runOn').hidden = false;
  $('runOnNativeText').textContent = nativeLabel();
  document.querySelector('.tagline').textContent = '104 structures from a CT, computed on this computer. Your images never leave it.';
  $('runOnWebGPU').disabled = app.webgpu !== '';
  if (app.webgpu) $('runOnWebGPUText').textContent = "this browser's GPU (WebGPU: not available here)";
  (app.webgpu === '' ? $('runOnWebGPU') : $('runOnNative')).checked = true;
  if (app.webgpu) {
    const s = $('gpuStatus');
    s.textContent = `No WebGPU in this browser · native: ${app.native.caps.adapter.name}`;
    s.className = 'gpu ok';
  }
  for (const el of document.querySelectorAll('input[name=runOn]')) el.addEventListener('change', () => { showWeights(); updateRun(); });
}

const runsNative = () => !!app.native && $('runOnNative').checked;

// nativeWeights is the native side's weight file for the chosen spacing, if it has one.
function nativeWeights() {
  const sp = +$('spacing').value;
  return app.native.caps.weights.find((w) => w.spacing === sp);
}

// followEvents reads the job's Server-Sent Events (through fetch: EventSource cannot send the
// CSRF header) until `done`, whose data it returns, or `error`, which it throws.
async function followEvents(id) {
  const r = await apiFetch(`api/jobs/${id}/events`);
  if (!r.ok) throw named('NativeError', (await r.text()).trim());
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw named('NativeError', 'the connection to ctseg app ended before the run did (was it stopped?)');
    buf += value;
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, k);
      buf = buf.slice(k + 2);
      let event = 'message', data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data += line.slice(5).trim();
      }
      if (event === 'progress') {
        const p = JSON.parse(data);
        if (p.stage === 'windows') onProgress(p.done, p.total);
        else $('progressText').textContent = p.stage === 'writing' ? 'Writing the labels on this computer…' : `Resampling to ${$('spacing').value} mm on this computer…`;
      } else if (event === 'done') {
        reader.cancel();
        return JSON.parse(data);
      } else if (event === 'error') {
        reader.cancel();
        throw named(data === 'cancelled' ? 'Cancelled' : 'NativeError', data);
      }
    }
  }
}

function named(name, text) {
  return Object.assign(new Error(text), { name });
}

// runNative sends the CT the page decoded (as NIfTI) to ctseg app, which runs pipeline.Segment
// as `ctseg segment` does; the labels come back and are shown, measured and offered for
// download as a browser run's are. The job is deleted on the native side once its labels are
// here. A cancel may come at any point: before the job exists it stops the upload (and a job
// that got created is deleted), after that it deletes the job.
async function runNative(t0) {
  const spacing = +$('spacing').value, precision = $('precision').value;
  const run = (app.native.run = { abort: new AbortController(), id: null, cancelled: false });
  const cancelled = () => named('Cancelled', 'cancelled');
  try {
    $('progressText').textContent = 'Sending the CT to ctseg on this computer…';
    const parts = await call('ctNifti', {});
    if (run.cancelled) throw cancelled();
    const r = await apiFetch(`api/jobs?spacing=${spacing}&precision=${precision}`, { method: 'POST', body: new Blob(parts), signal: run.abort.signal });
    if (!r.ok) throw named('NativeError', (await r.text()).trim());
    run.id = (await r.json()).id;
    if (run.cancelled) throw cancelled();
    const d = await followEvents(run.id);
    const lr = await apiFetch(`api/jobs/${run.id}/labels.nii.gz`);
    if (!lr.ok) throw named('NativeError', (await lr.text()).trim());
    const bytes = await lr.arrayBuffer();
    // p1, p2 and the runner-up, as a browser run gives them: the statistics' mean confidence
    // (computed in the worker, as a browser run's are) and the Teach view's hesitation map
    const p1 = await nativeVoxels(run.id, 'p1');
    if (run.cancelled) throw cancelled();
    const res = await call('loadLabels', { bytes, name: 'the native run', spacing, p1 }, p1 ? [bytes, p1.buffer] : [bytes]);
    if (res.p1) { // the worker kept the confidence (as it does for a browser run of this CT)
      res.p2 = await nativeVoxels(run.id, 'p2');
      res.second = await nativeVoxels(run.id, 'second');
      if (!res.p2 || !res.second) delete res.p1;
    }
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    const dev = app.native.caps.adapter.name;
    $('progressText').textContent = `Done: ${d.windows} windows in ${secs} s on ${dev} (native)${testROI ? ` (test window ${testROI})` : ''}.`;
    showResult(res, `${res.stats.length} structures found · ${spacing} mm model, ${precision} · ${secs} s · native: ${dev}`);
  } catch (e) {
    throw run.cancelled ? cancelled() : e; // whatever a cancel broke on the way is the cancel
  } finally {
    app.native.run = null;
    if (run.id) apiFetch(`api/jobs/${run.id}`, { method: 'DELETE' }).catch(() => {}); // nothing stays there
  }
}

// nativeVoxels fetches one of a finished native job's per-voxel byte maps (p1, p2, second: the
// API's NAME.u8, in the label map's voxel order); null when the run has none.
async function nativeVoxels(id, name) {
  const r = await apiFetch(`api/jobs/${id}/${name}.u8`);
  if (r.status === 404) return null;
  if (!r.ok) throw named('NativeError', (await r.text()).trim());
  return new Uint8Array(await r.arrayBuffer());
}

// cancelNative stops the native run wherever it is.
function cancelNative() {
  const run = app.native && app.native.run;
  if (!run) return false;
  run.cancelled = true;
  run.abort.abort();
  if (run.id) apiFetch(`api/jobs/${run.id}`, { method: 'DELETE' }).catch(() => {});
  return true;
}

// ---- CT --------------------------------------------------------------------------------

// ctMessage is the worker's loadCT message for a CT: one file's bytes, or the files of a DICOM
// series (source is then an array of Files). The page keeps the Files, so a restarted worker
// can be given them again.
async function ctMessage(source, name, series) {
  if (!Array.isArray(source)) return [{ bytes: await source.arrayBuffer(), name }];
  const images = source.filter((f) => f.size <= MAX_DICOM_FILE); // a larger file is no CT image
  const files = await Promise.all(images.map((f) => f.arrayBuffer()));
  return [{ files, names: images.map((f) => f.webkitRelativePath || f.name), name, series }, files];
}
const MAX_DICOM_FILE = 1 << 30; // dicom.MaxFileBytes

// queued runs loads one after another, in the order they were asked for: the worker's Go
// serves calls concurrently, so two overlapping loads could otherwise finish in either order
// and leave the older CT loaded under the newer one's name.
function queued(f) {
  const run = (app.loads || Promise.resolve()).then(f, f);
  app.loads = run.catch(() => {});
  return run;
}

// pickSeries offers the CT series of a folder that holds several, one button each.
function pickSeries(source, name, list) {
  const p = $('seriesPick');
  p.replaceChildren(...list.map((s) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.uid = s.uid;
    b.textContent = `${s.description || s.uid || 'unnamed series'} · ${s.images} images`;
    b.title = s.uid;
    b.addEventListener('click', () => {
      if (app.running) return message('A segmentation is running: wait for it or cancel it, then choose the series.', 'warn');
      p.hidden = true;
      loadCT(source, name, s.uid);
    });
    return b;
  }));
  p.hidden = false;
  $('ctInfo').textContent = app.ct ? `${app.ct.name} (still loaded)` : 'No CT loaded.';
  message(`${name} holds ${list.length} CT series: choose one.`, 'warn', undefined, 'ct');
  setState('pick-series');
}

async function loadCT(source, name, series) {
  if (app.running) return message('A segmentation is running: wait for it or cancel it before loading another CT.', 'warn');
  const gen = (app.loadGen = (app.loadGen || 0) + 1);
  setState('loading');
  message('');
  $('seriesPick').hidden = true;
  $('ctInfo').textContent = `Reading ${name}…`;
  app.loading = name;
  try {
    const info = await queued(async () => call('loadCT', ...await ctMessage(source, name, series)));
    if (gen !== app.loadGen) return; // a later load is on its way
    if (info.series) return pickSeries(source, name, info.series);
    app.ct = { source, name, series, info };
    $('dlSeg').hidden = !info.dicom; // a DICOM Segmentation refers to a DICOM series
    app.result = null;
    app.index = null;
    app.acceptNotCT = false;
    const d = info.dims, sp = info.spacing.map((x) => +x.toFixed(2));
    $('ctInfo').textContent = `${name}: ${d.join(' × ')} voxels, ${sp.join(' × ')} mm, ${Math.round(info.min)} to ${Math.round(info.max)} HU`;
    viewer.setVolume(info.hu, d, info.spacing, info.affine);
    viewer.setLabels(null);
    renderLegend();
    $('dlLabels').disabled = $('dlStats').disabled = $('dlSeg').disabled = true;
    $('summary').textContent = '';
    teach.refresh();
    if (info.notCT) message(`${name} does not look like a CT: ${info.notCT}. The model only makes sense on CT.`, 'warn', ['anyway'], 'ct');
    else if (info.notes) message(`${name}: ${info.notes}.`, 'warn', undefined, 'ct');
    setState('ready');
  } catch (e) {
    if (gen !== app.loadGen) return;
    $('ctInfo').textContent = app.ct ? `${app.ct.name} (still loaded)` : 'No CT loaded.';
    message(e.message, 'error', undefined, 'ct');
    setState('error');
  }
  updateRun();
}

$('ctFile').addEventListener('change', (ev) => {
  const f = ev.target.files[0];
  if (f) loadCT(f, f.name);
  ev.target.value = '';
});

// The files of a chosen folder are the images of a DICOM series; the folder names the CT.
$('ctFolder').addEventListener('change', (ev) => {
  // Hidden files and folders inside are skipped (the chosen folder's own name may start with a dot).
  const inside = (f) => (f.webkitRelativePath || f.name).split('/').slice(f.webkitRelativePath ? 1 : 0);
  const files = [...ev.target.files].filter((f) => !inside(f).some((p) => p.startsWith('.')));
  const all = [...ev.target.files];
  const folder = (all[0] && all[0].webkitRelativePath.split('/')[0]) || 'The folder';
  if (files.length) loadCT(files, folder);
  else message(`${folder} holds no files to read.`, 'error', undefined, 'ct');
  ev.target.value = '';
});

// filesOf lists the files under a dropped folder (hidden ones excepted). readEntries returns
// a batch at a time, until an empty one.
async function filesOf(entry) {
  if (entry.isFile) return [await new Promise((resolve, reject) => entry.file(resolve, reject))];
  const reader = entry.createReader(), out = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) return out;
    for (const e of batch) if (!e.name.startsWith('.')) out.push(...await filesOf(e));
  }
}

// Files dropped anywhere on the page: weights by their extension; a folder as a DICOM series;
// a NIfTI file as the CT; otherwise several files as the images of a series, one as the CT.
// (Dropping must never make the browser navigate away to the file and lose the work.)
const isWeights = (name) => /\.(pt|pth|safetensors)$/i.test(name);
async function dropped(ev) {
  ev.preventDefault();
  // Both lists must be taken before the first await: the drop data is gone after the event.
  const entries = [...ev.dataTransfer.items].map((it) => it.webkitGetAsEntry && it.webkitGetAsEntry()).filter(Boolean);
  const files = [...ev.dataTransfer.files];
  for (const f of files) if (isWeights(f.name)) loadWeights(f, f.name, 'from your disk');
  const folder = entries.find((e) => e.isDirectory);
  if (folder) return loadCT(await filesOf(folder), folder.name);
  const cts = files.filter((f) => !isWeights(f.name));
  const nifti = cts.find((f) => /\.nii(\.gz)?$/i.test(f.name));
  if (nifti) loadCT(nifti, nifti.name);
  else if (cts.length > 1) loadCT(cts, 'DICOM series');
  else if (cts.length === 1) loadCT(cts[0], cts[0].name);
}
const drop = $('drop');
for (const t of ['dragenter', 'dragover']) drop.addEventListener(t, (ev) => { ev.preventDefault(); drop.classList.add('over'); });
for (const t of ['dragleave', 'drop']) drop.addEventListener(t, () => drop.classList.remove('over'));
window.addEventListener('dragover', (ev) => ev.preventDefault());
window.addEventListener('drop', dropped);

$('sampleBtn').addEventListener('click', async () => {
  const r = await fetch('sample/example_ct.nii.gz');
  if (!r.ok) return message(`The sample CT is missing from this build (${r.status}).`);
  loadCT(await r.blob(), 'example_ct.nii.gz');
});

// ---- weights ---------------------------------------------------------------------------

const db = {
  open() {
    return new Promise((resolve, reject) => {
      const r = indexedDB.open('ctseg', 1);
      r.onupgradeneeded = () => r.result.createObjectStore('weights');
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
  },
  async run(mode, f) {
    const d = await this.open();
    return new Promise((resolve, reject) => {
      const tx = d.transaction('weights', mode);
      const req = f(tx.objectStore('weights'));
      tx.oncomplete = () => { resolve(req && req.result); d.close(); };
      tx.onerror = () => { reject(tx.error); d.close(); };
    });
  },
  get() { return this.run('readonly', (s) => s.get('current')); },
  put(v) { return this.run('readwrite', (s) => s.put(v, 'current')); },
  del() { return this.run('readwrite', (s) => s.delete('current')); },
};

async function loadWeights(source, name, from, spacing) {
  if (app.running) return;
  setState('loading');
  $('weightsInfo').textContent = `Reading ${name}…`;
  try {
    const info = await call('loadWeights', { bytes: await source.arrayBuffer(), name });
    app.weights = { source, name, info, from };
    const sp = spacing || info.spacing || 1.5;
    $('spacing').value = String(sp);
    if (from !== 'stored') {
      try {
        await db.put({ name, blob: source, spacing: sp, saved: Date.now() });
        app.weights.from = from + ', kept in this browser';
      } catch (e) {
        app.weights.from = from + ' (the browser refused to store it)';
      }
    }
    showWeights();
    if (app.messageOwner !== 'ct') message(''); // what a CT load had to say stays
    setState('ready');
  } catch (e) {
    message(e.message, 'error');
    showWeights();
    setState('error');
  }
  updateRun();
}

function showWeights() {
  const w = app.weights;
  if (runsNative()) {
    const nw = nativeWeights();
    const have = app.native.caps.weights.map((x) => `${x.spacing} mm (${x.name})`).join(', ') || 'none';
    $('weightsInfo').textContent = nw
      ? `Native runs use this computer's ${nw.name} for ${nw.spacing} mm.`
      : `This computer has no weights for the ${$('spacing').value} mm model (it has: ${have}). Run ctseg weights fetch, or start ctseg app with --weights-dir.`;
    $('getWeights').hidden = true;
    $('forgetWeights').hidden = !w;
    return;
  }
  if (!w) {
    $('weightsInfo').textContent = 'No weights yet.';
    $('getWeights').hidden = false;
    $('forgetWeights').hidden = true;
    return;
  }
  const i = w.info;
  const params = (i.params / 1e6).toFixed(i.params < 1e7 ? 2 : 1);
  const kind = i.bundle ? 'wholeBody_ct_segmentation SegResNet' : `SegResNet (F=${i.filters}, ${i.classes} classes: not the bundle's size)`;
  $('weightsInfo').textContent = `${w.name}: ${kind}, ${params} M parameters, ${$('spacing').value} mm (${w.from})`;
  $('getWeights').hidden = true;
  $('forgetWeights').hidden = false;
}

$('weightsFile').addEventListener('change', (ev) => {
  const f = ev.target.files[0];
  if (f) loadWeights(f, f.name, 'from your disk');
  ev.target.value = '';
});

$('spacing').addEventListener('change', async () => {
  showWeights();
  updateRun();
  if (!app.weights) return;
  try {
    const rec = await db.get();
    if (rec && rec.name === app.weights.name) await db.put({ ...rec, spacing: +$('spacing').value });
  } catch (e) { /* storage is a convenience */ }
});

$('forgetWeights').addEventListener('click', async () => {
  try { await db.del(); } catch (e) { /* nothing stored */ }
  if (app.weights) app.weights.from = 'not stored';
  showWeights();
});

async function serverWeights() {
  let list = [];
  try {
    const r = await apiFetch('api/weights');
    if (r.ok) list = await r.json();
  } catch (e) { /* no list: the server offers none */ }
  const box = $('serverWeights');
  box.textContent = '';
  for (const w of list) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = `Use ${w.name} (${(w.size / 1e6).toFixed(1)} MB, from the server)`;
    b.dataset.name = w.name;
    b.addEventListener('click', async () => {
      const r = await fetch(`weights/${encodeURIComponent(w.name)}`);
      if (!r.ok) return message(`The server could not send ${w.name} (${r.status}).`);
      loadWeights(await r.blob(), w.name, 'from the server');
    });
    box.append(b);
  }
  return list;
}

// ---- run -------------------------------------------------------------------------------

function updateRun() {
  const native = runsNative();
  const model = native ? !!nativeWeights() : app.weights && app.webgpu === '';
  const ok = app.ct && model && !app.running && !app.openingLabels && (!app.ct.info.notCT || app.acceptNotCT);
  $('runBtn').disabled = !ok;
  $('tuneBtn').disabled = !(app.weights && !app.running && app.webgpu === '' && !native);
  for (const el of document.querySelectorAll('input[name=runOn]')) el.disabled = app.running || (el.value === 'webgpu' && app.webgpu !== '');
  if (native) {
    const precs = app.native.caps.precisions;
    for (const o of $('precision').options) o.disabled = !precs.includes(o.value);
    if (!precs.includes($('precision').value)) $('precision').value = precs[0];
  } else {
    for (const o of $('precision').options) o.disabled = false;
  }
  $('labelsFile').disabled = !app.ct || app.running || app.openingLabels;
  $('labelsOpen').classList.toggle('disabled', $('labelsFile').disabled);
  $('runBtn').title = !app.ct ? 'Load a CT first'
    : native ? (nativeWeights() ? '' : `This computer has no weights for the ${$('spacing').value} mm model`)
      : app.webgpu ? app.webgpu : !app.weights ? 'Choose the weights first' : '';
}

let progressT0 = 0, progressD0 = 0;

function onProgress(done, total) {
  const p = $('progress');
  p.max = total;
  p.value = done;
  const now = performance.now();
  let eta = 'estimating…';
  if (progressT0 === 0) {
    progressT0 = now;
    progressD0 = done;
  } else if (done > progressD0) {
    const s = ((now - progressT0) / (done - progressD0)) * (total - done) / 1000;
    eta = s < 1 ? 'finishing' : `about ${s < 90 ? Math.ceil(s) + ' s' : Math.ceil(s / 60) + ' min'} left`;
  }
  $('progressText').textContent = `${done} / ${total} windows · ${eta}`;
  $('progressText').dataset.done = done;
  $('progressText').dataset.total = total;
}

async function run() {
  if ($('runBtn').disabled) return;
  app.running = true;
  updateRun();
  setState('running');
  message('');
  $('cancelBtn').hidden = false;
  $('progress').hidden = false;
  $('progress').value = 0;
  progressT0 = 0;
  $('progressText').textContent = 'Starting…';
  delete $('progressText').dataset.done;
  const t0 = performance.now();
  try {
    await (runsNative() ? runNative(t0) : runInBrowser(t0));
    setState('done');
  } catch (e) {
    runFailed(e);
  } finally {
    app.running = false;
    $('cancelBtn').hidden = true;
    updateRun();
  }
}

// runInBrowser runs the network in the worker on this browser's GPU (WebGPU).
async function runInBrowser(t0) {
  const fault = testFaults.shift();
  const r = await call('segment', { spacing: +$('spacing').value, precision: $('precision').value, roi: testROI, fault, confidence: true });
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  $('progressText').textContent = `Done: ${r.windows} windows in ${secs} s on ${r.adapter}${r.tiles ? `, tuned tiles ${r.tiles}` : ''}${testROI ? ` (test window ${testROI})` : ''}.`;
  showResult(r, `${r.stats.length} structures found · ${$('spacing').value} mm model, ${$('precision').value} · ${secs} s · GPU memory ${Math.round(r.peakMB)} MiB`);
}

// showResult shows a label map (a run's, or one opened from a file) over the CT, lists its
// structures and offers the downloads.
function showResult(r, summary) {
  app.result = r;
  viewer.setLabels(r.labels);
  app.index = indexLabels(r.labels, app.ct.info.dims);
  renderLegend();
  $('summary').textContent = summary;
  $('dlLabels').disabled = $('dlStats').disabled = false;
  $('dlSeg').disabled = r.stats.length === 0; // a DICOM Segmentation needs a structure
  $('dlSeg').title = r.stats.length ? 'The labels as a DICOM Segmentation of the series, for a PACS or a DICOM viewer' : 'No structure was found: a DICOM Segmentation needs one';
  teach.refresh();
}

// openLabels shows a label map of the loaded CT made earlier, without running the network. It
// waits behind CT loads (and a restarted worker's reload), so it is checked against the CT
// on screen.
async function openLabels(source, name) {
  if (!app.ct || app.running || app.openingLabels) return;
  app.openingLabels = true;
  updateRun();
  setState('loading');
  if (app.messageOwner !== 'ct') message(''); // what the CT load had to say stays
  try {
    const bytes = await source.arrayBuffer();
    const r = await queued(() => call('loadLabels', { bytes, name }));
    showResult(r, `${r.stats.length} structures in ${name}`);
    setState('done');
  } catch (e) {
    // keep offering "use this file anyway" for a CT that still needs it
    message(e.message, 'error', app.ct.info.notCT && !app.acceptNotCT ? ['anyway'] : undefined);
    setState('error');
  } finally {
    app.openingLabels = false;
    updateRun();
  }
}

$('labelsFile').addEventListener('change', (ev) => {
  const f = ev.target.files[0];
  ev.target.value = '';
  if (f) openLabels(f, f.name);
});

// tune times the convolution kernels on this GPU; the worker keeps the fastest for later runs.
async function tune() {
  if ($('tuneBtn').disabled) return;
  const before = document.body.dataset.state;
  app.running = true;
  updateRun();
  setState('tuning');
  message('');
  $('tuneInfo').textContent = 'Tuning…';
  try {
    const r = await call('tune', { precision: $('precision').value, roi: testROI, tiles: testTuneTiles });
    $('tuneInfo').textContent = r.tiles
      ? `Tuned for ${r.adapter}: a window takes ${r.tunedSeconds.toFixed(2)} s instead of ${r.defaultSeconds.toFixed(2)} s (tiles ${r.tiles}).`
      : `The default kernels are the fastest on ${r.adapter} (a window takes ${r.defaultSeconds.toFixed(2)} s).`;
    $('progressText').textContent = '';
    setState('tuned');
  } catch (e) {
    $('tuneInfo').textContent = '';
    if (e.name === 'SoftwareGPU') {
      message(e.message, 'warn');
      setState(before);
    } else {
      runFailed(e);
    }
  } finally {
    app.running = false;
    updateRun();
  }
}

function runFailed(e) {
  setState(e.name === 'Cancelled' ? 'cancelled' : 'error');
  $('progressText').textContent = '';
  $('progress').hidden = true;
  switch (e.name) {
    case 'Cancelled':
      message('Cancelled. The CT and the model are still loaded.', 'warn');
      break;
    case 'NoWebGPU':
    case 'NoAdapter':
      message(app.webgpu || `${e.message}. ${WEBGPU_BROWSERS}`, 'error');
      break;
    case 'GPUTooSmall':
      message(e.message, 'error', ['retry', 'lowres']);
      break;
    case 'NativeError':
      message(`The run on this computer failed: ${e.message}. The CT is still loaded: you can retry.`, 'error', ['retry']);
      break;
    default:
      message(`${e.message}. The CT and the model are still loaded: you can retry, or try the 3 mm model.`, 'error', ['retry', 'lowres']);
  }
}

$('runBtn').addEventListener('click', run);
$('tuneBtn').addEventListener('click', tune);
$('retryBtn').addEventListener('click', () => { message(''); run(); });
$('lowresBtn').addEventListener('click', () => {
  const s = [...$('serverWeights').querySelectorAll('button')].find((b) => /lowres|^3mm/i.test(b.dataset.name));
  if (s) return s.click();
  message('Choose model_lowres.pt (the 3 mm model) with "choose weights…"; the CT stays loaded. Download it from the link under Model if you do not have it.', 'warn');
  $('getWeights').hidden = false;
});
$('anywayBtn').addEventListener('click', () => {
  app.acceptNotCT = true;
  message('');
  updateRun();
});
$('cancelBtn').addEventListener('click', () => {
  if (!cancelNative()) app.worker.postMessage({ op: 'cancel' });
  $('progressText').textContent = 'Cancelling after the current window…';
});

// ---- downloads -------------------------------------------------------------------------

function save(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}

const baseName = () => app.ct.name.replace(/\.nii(\.gz)?$/i, '');

$('dlLabels').addEventListener('click', async () => {
  try {
    const b = await call('labelsNifti', {});
    save(new Blob([b], { type: 'application/gzip' }), `${baseName()}_labels.nii.gz`);
  } catch (e) { message(e.message); }
});
$('dlSeg').addEventListener('click', async () => {
  try {
    const r = await call('dicomSeg', {});
    save(new Blob(r.parts, { type: 'application/dicom' }), `${baseName()}_seg.dcm`);
    if (r.notes) message(`DICOM SEG: ${r.notes}.`, 'warn');
  } catch (e) { message(e.message); }
});
$('dlStats').addEventListener('click', async () => {
  try {
    const t = await call('statsCSV', {});
    save(new Blob([t], { type: 'text/csv' }), `${baseName()}_statistics.csv`);
  } catch (e) { message(e.message); }
});

// ---- display ---------------------------------------------------------------------------

for (const b of document.querySelectorAll('[data-wl]')) {
  b.addEventListener('click', () => {
    const [w, l] = b.dataset.wl.split(',').map(Number);
    $('winW').value = w;
    $('winL').value = l;
    viewer.setWindow(w, l);
  });
}
for (const id of ['winW', 'winL']) $(id).addEventListener('input', () => viewer.setWindow(+$('winW').value || 1, +$('winL').value || 0));
$('opacity').addEventListener('input', () => viewer.setOpacity(+$('opacity').value));
$('overlayOn').addEventListener('change', () => viewer.setOverlay($('overlayOn').checked));

function showHover(h) {
  const el = $('hover');
  if (!h) { el.textContent = 'Move the pointer over a view.'; return; }
  const name = h.label ? (app.names[h.label] || `label ${h.label}`) : '—';
  el.textContent = '';
  const add = (k, v) => {
    const d = document.createElement('div');
    const b = document.createElement('b');
    b.textContent = k;
    d.append(b, ` ${v}`);
    el.append(d);
  };
  add('voxel', h.p.join(', '));
  add('HU', String(h.hu));
  add('structure', name.replaceAll('_', ' '));
}

// ---- legend ----------------------------------------------------------------------------

function renderLegend() {
  const ul = $('legendList');
  ul.textContent = '';
  const stats = app.result ? app.result.stats : [];
  if (!stats.length) {
    const li = document.createElement('li');
    li.className = 'empty';
    li.textContent = app.result ? 'No structure found.' : 'Run a segmentation to list the structures.';
    ul.append(li);
    return;
  }
  for (const s of stats) {
    const li = document.createElement('li');
    li.dataset.label = s.label;
    li.dataset.name = s.name.replaceAll('_', ' ').toLowerCase();
    const cb = document.createElement('input');
    cb.type = 'checkbox';
    cb.checked = !!viewer.visible[s.label];
    cb.title = 'show / hide';
    cb.addEventListener('change', () => viewer.setVisible(s.label, cb.checked));
    const sw = document.createElement('span');
    sw.className = 'swatch';
    const c = app.colors[s.label] || [255, 255, 255];
    sw.style.background = `rgb(${c[0]},${c[1]},${c[2]})`;
    const nm = document.createElement('button');
    nm.type = 'button';
    nm.className = 'name';
    nm.textContent = s.name.replaceAll('_', ' ');
    nm.title = `Show ${nm.textContent} (mean ${Math.round(s.meanHU)} HU)`;
    nm.addEventListener('click', () => jumpTo(s.label));
    const ml = document.createElement('span');
    ml.className = 'ml';
    ml.textContent = `${s.ml < 10 ? s.ml.toFixed(1) : Math.round(s.ml)} ml`;
    li.append(cb, sw, nm, ml);
    ul.append(li);
  }
  filterLegend();
}

function filterLegend() {
  const q = $('legendSearch').value.trim().toLowerCase();
  for (const li of $('legendList').children) if (li.dataset.name) li.hidden = q !== '' && !li.dataset.name.includes(q);
}

function legendItems(visibleOnly) {
  return [...$('legendList').children].filter((li) => li.dataset.label && (!visibleOnly || !li.hidden));
}

$('legendSearch').addEventListener('input', filterLegend);
for (const [id, on] of [['allOn', true], ['allOff', false]]) {
  $(id).addEventListener('click', () => {
    const items = legendItems(true);
    for (const li of items) li.querySelector('input').checked = on;
    viewer.setAllVisible(items.map((li) => +li.dataset.label), on);
  });
}

function jumpTo(label) {
  if (!app.index || !app.index.has(label)) return;
  const p = nearestVoxel(app.result.labels, app.ct.info.dims, label, app.index.get(label));
  if (p) viewer.jumpTo(p);
  for (const li of legendItems(false)) li.classList.toggle('current', +li.dataset.label === label);
}

// ---- offline: the service worker -------------------------------------------------------

// registerOffline installs the service worker (sw.js) that keeps this build of the app for
// use without a network. Not under ctseg app, whose origin (its port) changes at every start.
async function registerOffline() {
  if (self.CTSEG_BUILD) $('buildInfo').textContent = `ctseg ${self.CTSEG_VERSION} · build ${self.CTSEG_BUILD}`;
  if (!('serviceWorker' in navigator) || app.native || app.nativeMissing) return;
  let reg;
  try {
    // 'none': the browser also checks build.js, which changes with every build, past the HTTP cache
    reg = await navigator.serviceWorker.register('sw.js', { updateViaCache: 'none' });
  } catch (e) {
    return; // no offline use (e.g. a private window); everything else works
  }
  const ready = () => { if (reg.waiting && navigator.serviceWorker.controller) newBuildReady(reg.waiting); };
  ready();
  reg.addEventListener('updatefound', () => {
    const w = reg.installing;
    if (w) w.addEventListener('statechange', () => { if (w.state === 'installed') ready(); });
  });
  navigator.serviceWorker.addEventListener('controllerchange', () => { if (app.reloadOnChange) location.reload(); });
}

// newBuildReady: a new deployment is cached whole and waits. An idle page switches to it at
// once (and reloads, so it never runs files of two builds); a page holding a CT asks first.
function newBuildReady(worker) {
  const go = () => {
    app.reloadOnChange = true;
    worker.postMessage('skipWaiting');
  };
  if (!app.ct && !app.running) return go();
  $('update').hidden = false;
  $('updateBtn').onclick = go;
}

// ---- start -----------------------------------------------------------------------------

async function init() {
  startWorker();
  const [table] = await Promise.all([call('labelTable', {}), checkWebGPU(), detectNative()]);
  showNative();
  registerOffline();
  app.names = table.names;
  app.colors = table.colors;
  viewer.setColors(table.colors);
  await serverWeights();
  try {
    const rec = await db.get();
    if (rec && rec.blob) await loadWeights(rec.blob, rec.name, 'stored', rec.spacing);
    if (app.weights) app.weights.from = 'kept in this browser';
  } catch (e) { /* nothing stored, or storage unavailable */ }
  showWeights();
  updateRun();
  setState(document.body.dataset.state === 'starting' ? 'idle' : document.body.dataset.state);
  openLesson(Teach.parseHash(location.hash));
}

// openLesson opens the Teach view as a lesson link describes it: the sample CT loaded where
// the link names it, the tab, the voxel, the block and the thresholds.
async function openLesson(lesson) {
  if (!lesson) return;
  if (lesson.sample && !app.ct) {
    const r = await fetch('sample/example_ct.nii.gz');
    if (r.ok) await loadCT(await r.blob(), 'example_ct.nii.gz');
  }
  setTeach(true);
  teach.restore(lesson);
}

init().catch((e) => {
  message(`The app failed to start: ${e.message}`);
  setState('error');
});
