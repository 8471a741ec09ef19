// instag preview page: plays a clip's audio and shows the frame the server rendered for the audio clock's
// position (frame index = floor(audio.currentTime * fps)); frames arrive ahead of the clock over a WebSocket.
// Live: the microphone's 16 kHz PCM goes to the server, which sends back the newest frame it could make of it;
// each is shown as soon as it arrives.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const canvas = $("view");
  const ctx = canvas.getContext("2d");
  const audio = $("audio");
  const clipSelect = $("clip");
  const playButton = $("play");
  const MAX_BUFFER = 64;
  const MIC_CHUNK = 160; // samples per message: 10 ms at 16 kHz
  const EASE_MS = 180; // time constant of the view's return to the front after a drag

  // Everything worth reading from outside (read-outs, tests).
  const S = (window.instagPreview = {
    connected: false, fps: 25, size: 256, device: "", clips: [],
    received: 0, receivedPlay: 0, receivedIdle: 0, drawn: 0,
    shownIndex: -1, shownMode: null, shownRev: -1, clockIndex: -1, audioTime: 0,
    renderFps: 0, renderMs: null, latencyMs: null, maxSyncError: 0, lastError: null,
    view: null, cam: null, rev: 0, live: false, liveFrames: 0, liveVoiced: null, heardSamples: 0,
    inputLatencyMs: null, // what the browser says the microphone's own capture takes, before the page hears it
    // The bench sets record = true: every captured chunk [samples after it, capture ms, PCM] and every live
    // frame drawn {i, end, voiced, drawn ms, jpeg} are kept in memory for it to read.
    record: false, recChunks: [], recFrames: [],
  });
  const cam = (S.cam = { yaw: 0, pitch: 0, zoom: 1 });
  let rev = 0; // bumped on every camera change
  const bump = () => { S.rev = ++rev; };
  let epoch = 0;
  let clip = null;
  let playing = false;
  let running = false; // the audio clock advances (playing, not starting or stalled)
  let ws = null;
  let maxUpload = 0;
  let sendPending = false;
  const buffer = new Map(); // play frame index → { bitmap, rev }
  const arrivals = [];

  function message(text) {
    $("message").textContent = text || "";
    if (text) S.lastError = text;
  }

  function state() {
    return { type: "state", clip, playing, running, t: audio.currentTime || 0, epoch, rev, live: mic !== null,
      song: $("song").checked, ...cam };
  }
  function send() {
    sendPending = false;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(state()));
  }
  function sendSoon() {
    if (!sendPending) { sendPending = true; requestAnimationFrame(send); }
  }

  function clearBuffer() {
    for (const f of buffer.values()) f.bitmap.close();
    buffer.clear();
  }

  function draw(bitmap, mode, index, frameRev) {
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    S.shownIndex = index; S.shownMode = mode; S.shownRev = frameRev; S.drawn++;
  }

  function addClip(c, select) {
    S.clips.push(c);
    const opt = document.createElement("option");
    opt.value = c.id;
    opt.textContent = `${c.name} (${c.duration.toFixed(1)} s)` + (c.note ? " · no voice heard" : "");
    opt.title = c.note;
    clipSelect.appendChild(opt);
    if (select || clip === null) { clipSelect.value = c.id; chooseClip(c.id); }
  }

  function chooseClip(id) {
    const c = S.clips.find((x) => x.id === id);
    if (!c) return;
    audio.pause();
    clip = c.id; playing = false; running = false; epoch++;
    clearBuffer();
    audio.src = c.url;
    audio.load();
    playButton.disabled = false;
    send();
  }

  async function onFrame(data) {
    const n = new DataView(data).getUint32(0, true);
    const h = JSON.parse(new TextDecoder().decode(new Uint8Array(data, 4, n)));
    const jpeg = new Uint8Array(data, 4 + n);
    const bitmap = await createImageBitmap(new Blob([jpeg], { type: "image/jpeg" }));
    S.received++;
    arrivals.push(performance.now());
    S.renderMs = h.ms;
    if (h.mode === "live") {
      if (S.live && h.i > S.shownIndex) {
        draw(bitmap, "live", h.i, h.rev);
        const now = performance.now();
        S.liveFrames++; S.liveVoiced = h.voiced;
        // Voice to lips: from the frame's middle sample entering the page to the frame on screen.
        const heard = captureTime(h.end - 8000 / S.fps);
        if (heard !== null && mic) {
          const lag = now - heard;
          S.latencyMs = S.latencyMs === null ? lag : 0.8 * S.latencyMs + 0.2 * lag;
          // What it heard, played back late by as much, less the time the output itself takes.
          const out = (mic.ctx.baseLatency || 0) + (mic.ctx.outputLatency || 0);
          mic.delay.delayTime.setTargetAtTime(Math.max(Math.min(S.latencyMs / 1000, 0.9) - out, 0), mic.ctx.currentTime, 0.5);
        }
        if (S.record) S.recFrames.push({ i: h.i, end: h.end, voiced: h.voiced, drawn: now, ms: h.ms, feature_ms: h.feature_ms, jpeg: jpeg.slice() });
      }
      bitmap.close();
      return;
    }
    if (h.mode === "play") {
      const old = buffer.get(h.i);
      if (!playing || h.clip !== clip || (old && old.rev > h.rev)) { bitmap.close(); return; }
      if (old) old.bitmap.close();
      buffer.set(h.i, { bitmap, rev: h.rev });
      S.receivedPlay++;
      while (buffer.size > MAX_BUFFER) {
        const far = Math.max(...buffer.keys());
        buffer.get(far).bitmap.close();
        buffer.delete(far);
      }
    } else {
      S.receivedIdle++;
      if (!playing && !S.live) draw(bitmap, "idle", h.i, h.rev);
      bitmap.close();
    }
  }

  // The display loop: the audio clock picks the frame.
  let lastReadout = 0;
  function tick(now) {
    requestAnimationFrame(tick);
    S.audioTime = audio.currentTime;
    if (playing) {
      const idx = Math.floor(audio.currentTime * S.fps);
      S.clockIndex = idx;
      const f = buffer.get(idx);
      if (f && (S.shownMode !== "play" || S.shownIndex !== idx || f.rev > S.shownRev)) {
        const first = S.shownMode !== "play" || S.shownIndex !== idx;
        draw(f.bitmap, "play", idx, f.rev);
        if (first) { // how long after the audio reached this frame's instant it appeared
          const lag = (audio.currentTime - idx / S.fps) * 1000;
          S.latencyMs = S.latencyMs === null ? lag : 0.8 * S.latencyMs + 0.2 * lag;
        }
      }
      if (S.shownMode === "play") S.maxSyncError = Math.max(S.maxSyncError, Math.abs(idx - S.shownIndex));
      for (const [k, v] of buffer) if (k < idx) { v.bitmap.close(); buffer.delete(k); }
    }
    while (arrivals.length && arrivals[0] < now - 1000) arrivals.shift();
    S.renderFps = arrivals.length;
    if (now - lastReadout > 250) {
      lastReadout = now;
      $("fps").textContent = String(S.renderFps);
      $("latency").textContent = S.latencyMs === null ? "–" : S.latencyMs.toFixed(0);
      $("frame").textContent = S.shownIndex < 0 ? "–" : String(S.shownIndex);
      $("mode").textContent = !S.connected ? "disconnected" : S.live ? (S.liveVoiced ? "live: hearing you" : "live: silence")
        : playing ? "playing" : "idle";
    }
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}/ws`);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { S.connected = true; };
    ws.onclose = (ev) => {
      S.connected = false;
      stopMic(false);
      message(ev.reason || "disconnected from the preview server"); // a refusal's reason is its message
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") { onFrame(ev.data).catch((e) => message(String(e))); return; }
      const m = JSON.parse(ev.data);
      if (m.type === "hello") {
        S.fps = m.fps; S.size = m.size; S.device = m.device; maxUpload = m.max_upload_bytes; S.view = m.view;
        canvas.width = canvas.height = m.size;
        $("details").textContent = `${m.size}² on ${m.device}, ${m.fps} fps`;
        if (!m.voice_rest) { $("song").checked = true; $("song").disabled = true; } // --no-voice-rest: all songs
        for (const c of m.clips) addClip(c, false);
        if (!m.clips.length) { playButton.disabled = true; message("no audio yet: upload a file"); }
        send();
      } else if (m.type === "live") {
        if (m.on && mic) { S.live = true; S.heardSamples = 0; S.shownIndex = -1; chunkLog.length = 0; message(""); }
      } else if (m.type === "error") {
        message(m.message);
        if (m.live === false) stopMic(false);
      }
    };
  }

  // Audio clock → server.
  // "play": frames from the current position are rendered while playback starts; "playing": the clock runs.
  audio.addEventListener("play", () => { playing = true; running = false; playButton.textContent = "pause"; send(); });
  audio.addEventListener("playing", () => { running = true; send(); });
  audio.addEventListener("waiting", () => { running = false; send(); });
  audio.addEventListener("seeked", () => { epoch++; send(); });
  for (const ev of ["pause", "ended", "emptied"]) {
    audio.addEventListener(ev, () => { playing = false; running = false; playButton.textContent = "play"; clearBuffer(); send(); });
  }
  setInterval(() => { if (playing) send(); }, 250);
  playButton.addEventListener("click", () => {
    if (mic) stopMic(true);
    if (audio.paused) audio.play().catch((e) => message(`cannot play: ${e.message}`));
    else audio.pause();
  });
  clipSelect.addEventListener("change", () => chooseClip(clipSelect.value));
  // A song's lips follow other frames: those already here were drawn for the other choice.
  $("song").addEventListener("change", () => { epoch++; clearBuffer(); send(); });

  // Orbit (drag) and zoom (wheel); the server re-renders from the new viewpoint.
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX, y: e.clientY };
    canvas.setPointerCapture(e.pointerId);
    canvas.classList.add("dragging");
  });
  // The avatar's view range (degrees, from its training views) bounds the drag; the server clamps the same way.
  const bound = (v, range) => Math.max(range[0] * Math.PI / 180, Math.min(range[1] * Math.PI / 180, v));
  canvas.addEventListener("pointermove", (e) => {
    if (!drag || !S.view) return;
    cam.yaw = bound(cam.yaw + (e.clientX - drag.x) * 0.01, S.view.yaw_deg);
    cam.pitch = bound(cam.pitch + (e.clientY - drag.y) * 0.01, S.view.pitch_deg);
    drag = { x: e.clientX, y: e.clientY };
    bump();
    sendSoon();
  });
  // Released, the view eases back to the front.
  let easing = false;
  function easeBack(last) {
    requestAnimationFrame((now) => {
      if (drag) { easing = false; return; }
      const k = Math.exp(-(now - last) / EASE_MS);
      cam.yaw *= k; cam.pitch *= k;
      if (Math.abs(cam.yaw) < 0.002 && Math.abs(cam.pitch) < 0.002) { cam.yaw = 0; cam.pitch = 0; easing = false; }
      bump();
      send();
      if (easing) easeBack(now);
    });
  }
  const endDrag = () => {
    drag = null;
    canvas.classList.remove("dragging");
    if (!easing && (cam.yaw || cam.pitch)) { easing = true; easeBack(performance.now()); }
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    cam.zoom = Math.max(0.5, Math.min(4, cam.zoom * Math.exp(-e.deltaY * 0.0015)));
    bump();
    sendSoon();
  }, { passive: false });
  $("reset").addEventListener("click", () => { cam.yaw = 0; cam.pitch = 0; cam.zoom = 1; bump(); send(); });

  // Microphone: getUserMedia → a 16 kHz AudioContext → the worklet's 10 ms PCM chunks → the WebSocket, once the
  // server has given this page the live slot. Optionally the page plays what it heard, delayed by the measured
  // latency so the sound meets the lips.
  let mic = null; // { stream, ctx, node, delay, gain }
  const chunkLog = []; // [samples sent after the chunk, when it was captured (ms)]
  function captureTime(sample) {
    for (let k = chunkLog.length - 1; k >= 0; k--) {
      const [after, t] = chunkLog[k];
      if (after - MIC_CHUNK <= sample) return t - Math.max(after - sample, 0) * 1000 / 16000;
    }
    return null;
  }
  async function startMic() {
    if (!navigator.mediaDevices) { message("no microphone access here (the page needs http://127.0.0.1 or localhost)"); return; }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true,
        noiseSuppression: false, autoGainControl: false } });
    } catch (e) { message(`no microphone: ${e.message}`); return; }
    const ctx = new AudioContext({ sampleRate: 16000, latencyHint: "interactive" });
    try {
      await ctx.audioWorklet.addModule("/static/mic-worklet.js");
    } catch (e) {
      stream.getTracks().forEach((t) => t.stop());
      ctx.close();
      throw e;
    }
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "mic-chunks", { numberOfOutputs: 0, processorOptions: { chunk: MIC_CHUNK } });
    const delay = ctx.createDelay(1.0);
    const gain = ctx.createGain();
    gain.gain.value = $("hear").checked ? 1 : 0;
    source.connect(node);
    source.connect(delay).connect(gain).connect(ctx.destination);
    node.port.onmessage = (e) => {
      if (!S.live || !ws || ws.readyState !== WebSocket.OPEN) return;
      const t = performance.now();
      ws.send(e.data);
      S.heardSamples += MIC_CHUNK;
      chunkLog.push([S.heardSamples, t]);
      if (chunkLog.length > 400) chunkLog.shift();
      if (S.record) S.recChunks.push([S.heardSamples, t, new Int16Array(e.data)]);
    };
    mic = { stream, ctx, node, delay, gain };
    const settings = stream.getAudioTracks()[0].getSettings();
    S.inputLatencyMs = typeof settings.latency === "number" ? settings.latency * 1000 : null;
    audio.pause();
    $("mic").textContent = "stop microphone";
    S.latencyMs = null;
    send();
  }
  function stopMic(tell) {
    if (!mic) return;
    mic.stream.getTracks().forEach((t) => t.stop());
    mic.ctx.close();
    mic = null; S.live = false;
    $("mic").textContent = "microphone";
    if (tell) send();
  }
  $("mic").addEventListener("click", () => { if (mic) stopMic(true); else startMic().catch((e) => message(`microphone: ${e.message}`)); });
  $("hear").addEventListener("change", () => { if (mic) mic.gain.gain.value = $("hear").checked ? 1 : 0; });

  // Upload: checked here for size, and again (size, type, decoding) by the server.
  $("upload").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (!file) return;
    if (maxUpload && file.size > maxUpload) {
      message(`${file.name}: ${(file.size / 2 ** 20).toFixed(1)} MiB is over the upload limit of ${(maxUpload / 2 ** 20).toFixed(0)} MiB`);
      return;
    }
    message(`uploading ${file.name}…`);
    try {
      const r = await fetch("/api/upload", { method: "POST", body: file,
        headers: { "X-Filename": encodeURIComponent(file.name), "Content-Type": "application/octet-stream" } });
      const j = await r.json().catch(() => ({ error: `upload failed (HTTP ${r.status})` }));
      if (!r.ok) { message(j.error); return; }
      addClip(j, true);
      message(`${j.name}: ${j.duration.toFixed(1)} s, ready` + (j.note ? `; ${j.note}` : ""));
    } catch (err) {
      message(`upload failed: ${err.message}`);
    }
  });

  requestAnimationFrame(tick);
  connect();
})();
