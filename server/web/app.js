// segsam web page: open an image or a NIfTI volume, click or drag to prompt,
// see the mask in its class colour. Talks to the JSON API of the same server
// (see /openapi.json); no dependencies.
'use strict';

const $ = (id) => document.getElementById(id);

// Distinct class colours (RGB), indexed by class index; plain SAM uses 0.
const PALETTE = [
  [255, 99, 71], [60, 180, 255], [255, 205, 50], [120, 220, 110], [200, 120, 255],
  [255, 150, 200], [70, 230, 220], [255, 160, 60], [170, 255, 80], [140, 150, 255],
  [230, 80, 160], [100, 200, 160], [220, 220, 120], [255, 110, 110], [110, 170, 230],
];
const colourOf = (i) => PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
const css = (c) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;

const state = {
  model: null,     // GET /v1/model
  image: null,     // GET /v1/images/{id}
  width: 0, height: 0,
  views: new Map(), // view key -> {points, box, history, result, mask}
  seq: 0,          // latest predict request number
};

function setStatus(msg, isError) {
  const s = $('status');
  s.textContent = msg || '';
  s.classList.toggle('error', !!isError);
}

async function api(path, opts) {
  const res = await fetch(path, opts);
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try { msg = (await res.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return res;
}

function isVolume() { return state.image && state.image.kind === 'volume'; }

function sliceSpec() { return `${$('axis').value}:${$('slice').value}`; }

function viewKey() { return isVolume() ? sliceSpec() : ''; }

function view() {
  const k = viewKey();
  if (!state.views.has(k)) state.views.set(k, { points: [], box: null, history: [], result: null, mask: null, auto: null });
  return state.views.get(k);
}

async function loadModel() {
  try {
    state.model = await (await api('/v1/model')).json();
    $('model').textContent = state.model.description;
    const legend = $('legend');
    legend.textContent = '';
    state.model.classes.forEach((c, i) => {
      const item = document.createElement('span');
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = css(colourOf(i));
      item.append(sw, c);
      legend.append(item);
    });
  } catch (e) {
    setStatus(`model: ${e.message}`, true);
  }
}

async function upload(file) {
  setStatus(`uploading ${file.name}…`);
  try {
    const res = await api(`/v1/images?name=${encodeURIComponent(file.name)}&window=${encodeURIComponent($('window').value)}`,
      { method: 'POST', body: file, headers: { 'Content-Type': 'application/octet-stream' } });
    state.image = await res.json();
    state.views = new Map();
    const vol = isVolume();
    $('volume-controls').hidden = !vol;
    $('download-labels').hidden = !vol;
    if (vol) setAxis('axial');
    await render();
    setStatus(`${file.name}: ${state.width}×${state.height}${vol ? ' slice' : ''} — click on the image`);
  } catch (e) {
    setStatus(`upload: ${e.message}`, true);
  }
}

function setAxis(axis) {
  $('axis').value = axis;
  const n = state.image.volume.slices[axis].count;
  const s = $('slice');
  s.max = String(n - 1);
  s.value = String(Math.floor(n / 2));
  $('slice-label').textContent = `${s.value} / ${n - 1}`;
}

let renderToken = 0;
async function render() {
  const token = ++renderToken;
  let url = `/v1/images/${state.image.id}/render`;
  if (isVolume()) url += `?slice=${encodeURIComponent(sliceSpec())}&window=${encodeURIComponent($('window').value)}`;
  const img = new Image();
  img.src = url;
  await img.decode();
  if (token !== renderToken) return;
  const c = $('image');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  c.getContext('2d').drawImage(img, 0, 0);
  state.width = c.width; state.height = c.height;
  $('stage').hidden = false;
  $('placeholder').hidden = true;
  // Fit the image to the page, enlarging small ones (volume slices) up to 16x.
  const maxW = $('stage-wrap').clientWidth, maxH = window.innerHeight - 100;
  const scale = Math.max(0.05, Math.min(maxW / c.width, maxH / c.height, 16));
  const w = Math.round(c.width * scale), h = Math.round(c.height * scale);
  c.style.width = `${w}px`;
  c.style.height = `${h}px`;
  // The overlay has the screen's resolution, so that markers stay sharp.
  const o = $('overlay');
  const dpr = window.devicePixelRatio || 1;
  o.width = Math.round(w * dpr); o.height = Math.round(h * dpr);
  draw();
}

// decodeRLE turns a COCO RLE (column-major counts) into a row-major mask.
function decodeRLE(rle) {
  const [h, w] = rle.size;
  const mask = new Uint8Array(h * w);
  let pos = 0, on = false;
  for (const c of rle.counts) {
    if (on) for (let k = pos; k < pos + c; k++) mask[(k % h) * w + Math.floor(k / h)] = 1;
    pos += c; on = !on;
  }
  return mask;
}

function toImagePoint(ev) {
  const r = $('overlay').getBoundingClientRect();
  return {
    x: Math.min(state.width, Math.max(0, (ev.clientX - r.left) * state.width / r.width)),
    y: Math.min(state.height, Math.max(0, (ev.clientY - r.top) * state.height / r.height)),
  };
}

function snapshot(v) { v.history.push({ points: v.points.slice(), box: v.box && v.box.slice() }); }

function addPoint(p, label) {
  const v = view();
  snapshot(v);
  v.points.push({ x: p.x, y: p.y, label });
  predict();
}

function setBox(a, b) {
  const v = view();
  snapshot(v);
  v.box = [Math.min(a.x, b.x), Math.min(a.y, b.y), Math.max(a.x, b.x), Math.max(a.y, b.y)];
  predict();
}

function undo() {
  const v = view();
  const prev = v.history.pop();
  if (!prev) return;
  v.points = prev.points; v.box = prev.box;
  predict();
}

function clearView() {
  const v = view();
  if (v.auto) { v.auto = null; draw(); }
  if (!v.points.length && !v.box) return;
  snapshot(v);
  v.points = []; v.box = null;
  predict();
}

async function predict() {
  const v = view();
  const seq = ++state.seq;
  updateButtons();
  if (!v.points.length && !v.box) {
    v.result = null; v.mask = null;
    draw();
    return;
  }
  const body = { points: v.points, format: 'rle' };
  if (v.box) body.boxes = [v.box];
  if (isVolume()) { body.slice = sliceSpec(); body.window = $('window').value; }
  setStatus('segmenting…');
  try {
    const res = await (await api(`/v1/images/${state.image.id}/predict`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    })).json();
    if (seq !== state.seq) return; // a newer request is on its way
    const p = res.prompts[0];
    const m = p.masks[p.best];
    v.result = { prompt: p, mask: m, timings: res.timings_ms };
    v.mask = decodeRLE(m.rle);
    setStatus('');
  } catch (e) {
    if (seq === state.seq) setStatus(`predict: ${e.message}`, true);
  }
  draw();
}

// labelAll asks for the automatic label map of the current view ("label
// everything") and paints every class in its colour (label = class index + 1).
async function labelAll() {
  const v = view();
  const body = { format: 'rle' };
  if (isVolume()) { body.slice = sliceSpec(); body.window = $('window').value; }
  setStatus('labelling everything…');
  $('label-all').disabled = true;
  try {
    const res = await (await api(`/v1/images/${state.image.id}/segment-all`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    })).json();
    v.auto = {
      classes: res.classes.map((c) => ({ ...c, mask: decodeRLE(c.rle) })),
      objects: res.objects, candidates: res.candidates, ms: res.timings_ms.total,
    };
    setStatus('');
  } catch (e) {
    setStatus(`label everything: ${e.message}`, true);
  }
  draw();
}

function showAuto(v) {
  const a = v && v.auto;
  $('auto-result').hidden = !a;
  if (!a) return;
  $('auto-summary').textContent = `label everything: ${a.classes.length} classes from ${a.objects} of ${a.candidates} masks · ${a.ms.toFixed(0)} ms`;
  const list = $('auto-classes');
  list.textContent = '';
  for (const c of a.classes) {
    const item = document.createElement('span');
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = css(colourOf(c.id - 1));
    item.append(sw, `${c.name} · ${c.pixels} px · IoU ${c.score.toFixed(2)}`);
    list.append(item);
  }
}

// paintAuto draws the automatic label map of a view onto the overlay.
function paintAuto(ctx, o, v) {
  if (!v.auto) return;
  maskCanvas.width = state.width; maskCanvas.height = state.height;
  const mctx = maskCanvas.getContext('2d');
  const data = mctx.createImageData(state.width, state.height);
  for (const c of v.auto.classes) {
    if (c.mask.length !== state.width * state.height) continue;
    const colour = colourOf(c.id - 1);
    for (let i = 0; i < c.mask.length; i++) {
      if (!c.mask[i]) continue;
      const j = 4 * i;
      data.data[j] = colour[0]; data.data[j + 1] = colour[1]; data.data[j + 2] = colour[2]; data.data[j + 3] = 110;
    }
  }
  mctx.putImageData(data, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(maskCanvas, 0, 0, o.width, o.height);
}

// maskCanvas holds the mask at the image's resolution, drawn scaled onto the
// overlay without smoothing.
const maskCanvas = document.createElement('canvas');

function draw() {
  const o = $('overlay');
  const ctx = o.getContext('2d');
  ctx.clearRect(0, 0, o.width, o.height);
  const v = state.image ? view() : null;
  const label = $('overlay-label');
  if (!v) { label.hidden = true; return; }
  const r = v.result;
  const colour = colourOf(r && r.prompt.class_index != null ? r.prompt.class_index : 0);
  const k = o.width / state.width; // overlay pixels per image pixel
  paintAuto(ctx, o, v);
  const cssScale = o.getBoundingClientRect().width / state.width; // CSS pixels per image pixel
  if (v.mask && v.mask.length === state.width * state.height) {
    maskCanvas.width = state.width; maskCanvas.height = state.height;
    const mctx = maskCanvas.getContext('2d');
    const data = mctx.createImageData(state.width, state.height);
    let n = 0, sx = 0, sy = 0;
    for (let i = 0; i < v.mask.length; i++) {
      if (!v.mask[i]) continue;
      const j = 4 * i;
      data.data[j] = colour[0]; data.data[j + 1] = colour[1]; data.data[j + 2] = colour[2]; data.data[j + 3] = 120;
      n++; sx += i % state.width; sy += Math.floor(i / state.width);
    }
    mctx.putImageData(data, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(maskCanvas, 0, 0, o.width, o.height);
    if (n > 0) {
      // The label sits just above the mask's centroid.
      label.style.left = `${(sx / n) * cssScale}px`;
      label.style.top = `${Math.max((sy / n) * cssScale, 24)}px`;
    } else {
      label.style.left = `${state.width * cssScale / 2}px`;
      label.style.top = '24px';
    }
  }
  // Markers have the same size on screen whatever the zoom.
  const dpr = o.width / Math.max(1, o.getBoundingClientRect().width); // overlay pixels per CSS pixel
  for (const p of v.points) {
    ctx.beginPath();
    ctx.arc(p.x * k, p.y * k, 5 * dpr, 0, 2 * Math.PI);
    ctx.fillStyle = p.label === 1 ? '#2ecc40' : '#ff4136';
    ctx.fill();
    ctx.lineWidth = 1.5 * dpr;
    ctx.strokeStyle = '#fff';
    ctx.stroke();
  }
  if (v.box) {
    ctx.lineWidth = 2 * dpr;
    ctx.strokeStyle = '#4da3ff';
    ctx.strokeRect(v.box[0] * k, v.box[1] * k, (v.box[2] - v.box[0]) * k, (v.box[3] - v.box[1]) * k);
  }
  if (drag && drag.moved) {
    ctx.lineWidth = 1.5 * dpr;
    ctx.setLineDash([4 * dpr, 3 * dpr]);
    ctx.strokeStyle = '#fff';
    ctx.strokeRect(drag.a.x * k, drag.a.y * k, (drag.b.x - drag.a.x) * k, (drag.b.y - drag.a.y) * k);
    ctx.setLineDash([]);
  }
  showResult(v, colour);
  showAuto(v);
  updateButtons();
}

function showResult(v, colour) {
  const r = v.result;
  const label = $('overlay-label');
  $('result').hidden = !r;
  label.hidden = !r;
  if (!r) return;
  const p = r.prompt;
  const name = p.class || 'object';
  const conf = p.confidence != null ? `${(100 * p.confidence).toFixed(1)} %` : '';
  label.textContent = conf ? `${name} ${conf}` : name;
  label.style.background = css(colour);
  $('result-swatch').style.background = css(colour);
  $('result-class').textContent = name;
  $('result-confidence').textContent = conf;
  $('result-details').textContent = `predicted IoU ${r.mask.iou.toFixed(3)} · ${r.mask.area} px`;
  const t = r.timings;
  $('result-timings').textContent = `embedding ${t.embedding}${t.encode ? ` (${t.encode.toFixed(0)} ms)` : ''} · decode ${t.decode.toFixed(1)} ms · total ${t.total.toFixed(1)} ms`;
}

function updateButtons() {
  const v = state.image ? view() : null;
  $('undo').disabled = !v || !v.history.length;
  $('clear').disabled = !v || (!v.points.length && !v.box && !v.auto);
  $('label-all').disabled = !v;
  $('download-mask').disabled = !v || !v.mask;
  let any = false;
  for (const x of state.views.values()) any = any || !!x.mask;
  $('download-labels').disabled = !any;
}

function save(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function baseName() {
  return (state.image.name || state.image.id).replace(/(\.nii)?(\.gz)?$|\.[a-z]+$/i, '');
}

function downloadMask() {
  const v = view();
  if (!v.mask) return;
  const c = document.createElement('canvas');
  c.width = state.width; c.height = state.height;
  const ctx = c.getContext('2d');
  const data = ctx.createImageData(c.width, c.height);
  for (let i = 0; i < v.mask.length; i++) {
    const g = v.mask[i] ? 255 : 0;
    data.data[4 * i] = g; data.data[4 * i + 1] = g; data.data[4 * i + 2] = g; data.data[4 * i + 3] = 255;
  }
  ctx.putImageData(data, 0, 0);
  const suffix = isVolume() ? `_${sliceSpec().replace(':', '')}` : '';
  c.toBlob((b) => save(b, `${baseName()}${suffix}_mask.png`), 'image/png');
}

async function downloadLabels() {
  const masks = [];
  for (const [slice, v] of state.views) {
    if (!v.result) continue;
    const ci = v.result.prompt.class_index;
    masks.push({ slice, label: (ci != null ? ci : 0) + 1, rle: v.result.mask.rle });
  }
  try {
    const res = await api(`/v1/images/${state.image.id}/labelmap`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ masks }),
    });
    save(await res.blob(), `${baseName()}_labels.nii.gz`);
    setStatus(`label map: ${masks.length} slice(s); label = class index + 1`);
  } catch (e) {
    setStatus(`label map: ${e.message}`, true);
  }
}

let drag = null;

function setup() {
  const o = $('overlay');
  o.addEventListener('contextmenu', (ev) => ev.preventDefault());
  o.addEventListener('mousedown', (ev) => {
    if (!state.image) return;
    ev.preventDefault();
    if (ev.button === 2) { addPoint(toImagePoint(ev), 0); return; }
    if (ev.button === 0) { const p = toImagePoint(ev); drag = { a: p, b: p, moved: false }; }
  });
  window.addEventListener('mousemove', (ev) => {
    if (!drag) return;
    drag.b = toImagePoint(ev);
    const r = o.getBoundingClientRect();
    const px = (Math.abs(drag.b.x - drag.a.x) + Math.abs(drag.b.y - drag.a.y)) * r.width / state.width;
    if (px > 6) drag.moved = true;
    if (drag.moved) draw();
  });
  window.addEventListener('mouseup', (ev) => {
    if (!drag || ev.button !== 0) return;
    const d = drag;
    drag = null;
    if (d.moved) setBox(d.a, toImagePoint(ev)); else addPoint(d.a, 1);
  });
  $('file').addEventListener('change', (ev) => { if (ev.target.files[0]) upload(ev.target.files[0]); });
  const wrap = $('stage-wrap');
  wrap.addEventListener('dragover', (ev) => ev.preventDefault());
  wrap.addEventListener('drop', (ev) => {
    ev.preventDefault();
    if (ev.dataTransfer.files[0]) upload(ev.dataTransfer.files[0]);
  });
  $('axis').addEventListener('change', async () => { setAxis($('axis').value); await render(); updateButtons(); });
  $('slice').addEventListener('input', async () => {
    $('slice-label').textContent = `${$('slice').value} / ${$('slice').max}`;
    await render();
    updateButtons();
  });
  $('window').addEventListener('change', async () => {
    if (!isVolume()) return;
    await render();
    if (view().points.length || view().box) predict();
  });
  window.addEventListener('resize', () => { if (state.image) render(); });
  $('undo').addEventListener('click', undo);
  $('clear').addEventListener('click', clearView);
  $('download-mask').addEventListener('click', downloadMask);
  $('download-labels').addEventListener('click', downloadLabels);
  $('label-all').addEventListener('click', labelAll);
  window.addEventListener('keydown', (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key === 'z') { ev.preventDefault(); undo(); }
    if (ev.key === 'Escape') clearView();
  });
  loadModel();
}

setup();
