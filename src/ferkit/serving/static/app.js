// ferkit page: upload a photo or stream the webcam to POST /v1/predict and draw the results.
"use strict";

const canvas = document.getElementById("canvas");
const context = canvas.getContext("2d");
const message = document.getElementById("message");
const facesList = document.getElementById("faces");
const video = document.getElementById("video");
const FRAME_INTERVAL_MS = 400; // webcam: one frame in flight at a time, at most every 400 ms
let stream = null;
let streaming = false;
let generation = 0; // bumped on Stop: answers to an older webcam session are dropped
// smoothing: start (tests/test_serving.py runs this part in Node)
// Webcam labels: each face is linked to the previous frames' faces (box overlap) and its
// probabilities are averaged over time, so a label does not flicker from frame to frame.
const SMOOTHING = 0.6; // weight of the past (ferkit.inference.tracking.DEFAULT_SMOOTHING)
const MAX_MISSED = 3; // frames a face may be missing before its track ends
let tracks = [];
let nextTrack = 1;

function overlap(a, b) {
  const width = Math.max(0, Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x));
  const height = Math.max(0, Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y));
  const shared = width * height;
  return shared / (a.width * a.height + b.width * b.height - shared);
}

function smoothFaces(result) {
  const free = new Set(tracks);
  for (const face of result.faces) {
    let best = null;
    let bestOverlap = 0.3; // less overlap than this: another person
    for (const track of free) {
      const value = overlap(track.box, face.box);
      if (value > bestOverlap) [best, bestOverlap] = [track, value];
    }
    if (best === null) {
      best = { id: nextTrack++, probabilities: { ...face.probabilities } };
      tracks.push(best);
    } else {
      free.delete(best);
      for (const name of Object.keys(face.probabilities))
        best.probabilities[name] = SMOOTHING * best.probabilities[name] +
          (1 - SMOOTHING) * face.probabilities[name];
    }
    best.box = face.box;
    best.missed = 0;
    face.track = best.id;
    face.probabilities = { ...best.probabilities };
    [face.emotion, face.emotion_score] = Object.entries(face.probabilities)
      .reduce((top, entry) => (entry[1] > top[1] ? entry : top));
  }
  for (const track of free) track.missed += 1;
  tracks = tracks.filter((track) => track.missed <= MAX_MISSED);
  return result;
}
// smoothing: end

function say(text, warning = false) {
  message.textContent = text;
  message.className = warning ? "warning" : "";
}

const explainToggle = document.getElementById("explain");
let lastFile = null; // re-analysed when the explanation toggle changes
let fileRequest = 0; // only the latest photo request is drawn (a map answers later than a prediction)

async function predict(blob) {
  const form = new FormData();
  form.append("file", blob, "image.jpg");
  // With the toggle on, /v1/explain answers like /v1/predict plus a map per face.
  const route = explainToggle.checked ? "/v1/explain" : "/v1/predict";
  const response = await fetch(route, { method: "POST", body: form });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// Jet-like colours (blue → red), transparent where the map is low, drawn over the face's crop.
function drawSaliency(face, scale) {
  const rows = face.saliency;
  const size = rows.length;
  const heat = document.createElement("canvas");
  heat.width = heat.height = size;
  const pixels = heat.getContext("2d").createImageData(size, size);
  const clamp = (value) => Math.max(0, Math.min(1, value));
  rows.forEach((row, y) => row.forEach((value, x) => {
    const offset = 4 * (y * size + x);
    pixels.data[offset] = 255 * clamp(1.5 - Math.abs(4 * value - 3));
    pixels.data[offset + 1] = 255 * clamp(1.5 - Math.abs(4 * value - 2));
    pixels.data[offset + 2] = 255 * clamp(1.5 - Math.abs(4 * value - 1));
    pixels.data[offset + 3] = 255 * (0.15 + 0.5 * value);
  }));
  heat.getContext("2d").putImageData(pixels, 0, 0);
  context.imageSmoothingEnabled = true;
  // The crop square, turned about its centre for an aligned face (crop.angle, clockwise).
  const crop = face.crop;
  const half = (crop.side * scale) / 2;
  context.save();
  context.translate(crop.x * scale + half, crop.y * scale + half);
  context.rotate(((crop.angle || 0) * Math.PI) / 180);
  context.drawImage(heat, -half, -half, 2 * half, 2 * half);
  context.restore();
}

function draw(source, result) {
  canvas.width = source.videoWidth || source.naturalWidth || source.width;
  canvas.height = source.videoHeight || source.naturalHeight || source.height;
  context.drawImage(source, 0, 0, canvas.width, canvas.height);
  const scale = canvas.width / result.image.width;
  const line = Math.max(2, Math.round(canvas.width / 300));
  context.font = `${Math.max(14, Math.round(canvas.width / 35))}px system-ui, sans-serif`;
  facesList.innerHTML = "";
  result.faces.forEach((face) => { if (face.saliency) drawSaliency(face, scale); });
  result.faces.forEach((face, index) => {
    const box = face.box;
    const [x, y, w, h] = [box.x * scale, box.y * scale, box.width * scale, box.height * scale];
    context.lineWidth = line;
    context.strokeStyle = "#22aa77";
    context.strokeRect(x, y, w, h);
    const tag = face.track === undefined ? "" : `#${face.track} `;
    const label = `${tag}${face.emotion.toLowerCase()} ${(face.emotion_score * 100).toFixed(0)}%`;
    const textWidth = context.measureText(label).width;
    const textHeight = parseInt(context.font, 10);
    context.fillStyle = "#22aa77";
    context.fillRect(x, Math.max(0, y - textHeight - 6), textWidth + 8, textHeight + 6);
    context.fillStyle = "#000";
    context.fillText(label, x + 4, Math.max(textHeight, y - 5));
    const item = document.createElement("li");
    item.dataset.emotion = face.emotion.toLowerCase();
    if (face.track !== undefined) item.dataset.track = String(face.track);
    const title = face.track === undefined ? `Face ${index + 1}` : `Person ${face.track}`;
    item.innerHTML = `<strong>${title}: ${face.emotion.toLowerCase()}</strong>` +
      Object.entries(face.probabilities).map(([name, p]) =>
        `<div class="bar"><span>${name}</span><span class="track"><span class="fill" style="width:${(p * 100).toFixed(1)}%;display:block"></span></span><span>${(p * 100).toFixed(0)}%</span></div>`
      ).join("");
    facesList.appendChild(item);
  });
  if (result.faces.length === 0) say("No face found in this image.", true);
  else say(`${result.faces.length} face(s) found in ${result.timing_ms.total.toFixed(0)} ms.`);
}

async function analyzeFile(file) {
  if (!file) return;
  lastFile = file;
  const request = ++fileRequest;
  say("Analysing…");
  const image = new Image();
  image.src = URL.createObjectURL(file);
  await image.decode().catch(() => {});
  try {
    const result = await predict(file);
    if (request === fileRequest) draw(image, result);
  } catch (error) {
    if (request === fileRequest) say(`Could not analyse this file: ${error.message}`, true);
  } finally {
    URL.revokeObjectURL(image.src);
  }
}

explainToggle.addEventListener("change", () => { if (!streaming && lastFile) analyzeFile(lastFile); });

const drop = document.getElementById("drop");
document.getElementById("file").addEventListener("change", (event) => analyzeFile(event.target.files[0]));
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  analyzeFile(event.dataTransfer.files[0]);
});

async function webcamLoop(session) {
  const grab = document.createElement("canvas");
  while (streaming && session === generation) {
    const started = performance.now();
    if (video.videoWidth) {
      grab.width = video.videoWidth;
      grab.height = video.videoHeight;
      grab.getContext("2d").drawImage(video, 0, 0);
      const blob = await new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", 0.85));
      try {
        const result = await predict(blob);
        if (session !== generation) break; // stopped while this frame was in flight
        draw(video, smoothFaces(result));
      } catch (error) {
        if (session === generation) say(`Server error: ${error.message}`, true);
      }
    }
    const wait = FRAME_INTERVAL_MS - (performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
  }
}

document.getElementById("start").addEventListener("click", async () => {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    say(`Camera not available or permission refused (${error.name}).`, true);
    return;
  }
  video.srcObject = stream;
  video.hidden = false;
  streaming = true;
  tracks = []; // a new session starts new tracks
  nextTrack = 1;
  document.getElementById("start").disabled = true;
  document.getElementById("stop").disabled = false;
  say("Webcam running…");
  webcamLoop(generation);
});

document.getElementById("stop").addEventListener("click", () => {
  streaming = false;
  generation += 1;
  if (stream) stream.getTracks().forEach((track) => track.stop());
  video.hidden = true;
  document.getElementById("start").disabled = false;
  document.getElementById("stop").disabled = true;
  say("Webcam stopped.");
});

for (const [button, panel] of [["mode-photo", "photo-panel"], ["mode-webcam", "webcam-panel"]]) {
  document.getElementById(button).addEventListener("click", () => {
    document.querySelectorAll("nav button").forEach((b) => b.classList.remove("active"));
    document.getElementById(button).classList.add("active");
    document.getElementById("photo-panel").hidden = panel !== "photo-panel";
    document.getElementById("webcam-panel").hidden = panel !== "webcam-panel";
  });
}

fetch("/v1/model").then((r) => r.json()).then((info) => {
  document.getElementById("model").textContent =
    `model: ${info.model.name} (${info.model.architecture}), ferkit ${info.model.ferkit_version}, detector ${info.model.detector}`;
});
