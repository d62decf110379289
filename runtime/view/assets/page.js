// ccs-view: the video is the clock; every track plays along in its own <audio> element, muted except the one
// you hear, so switching tracks never moves the playhead. Plots are drawn here from data computed by ccs-view.
(() => {
  "use strict";
  const data = JSON.parse(document.getElementById("ccs-data").textContent);
  const video = document.getElementById("video");
  const MARGIN_LEFT = 44; // CSS px left of every plot's time axis (the y labels)
  const MARGIN_RIGHT = 10;
  const HARD_SYNC_S = 0.045; // a track further than this from the clock is put back on it at once
  const SOFT_SYNC_S = 0.012; // closer than this: left alone; in between: nudged by its playback rate
  const NUDGE = 0.005;
  const audios = {};
  let clock = video;
  let active = "binaural";
  let previous = "original";

  const $ = (id) => document.getElementById(id);
  const others = () => Object.values(audios).filter((a) => a !== clock);
  const fmt = (t) => `${Math.floor(t / 60)}:${(t % 60).toFixed(1).padStart(4, "0")}`;
  const db = (gain) => (gain > 0 ? `${(20 * Math.log10(gain)).toFixed(1).replace(/^-0\.0$/, "0.0")} dB` : "silent");

  // ---- tracks and the A/B switch --------------------------------------------------------------------------
  function addTrack(track) {
    const audio = document.createElement("audio");
    audio.preload = "auto";
    audio.src = data.urls[track.media];
    audio.volume = Math.min(1, Math.max(0, track.gain));
    audio.muted = track.id !== active;
    audio.dataset.track = track.id;
    $("audios").appendChild(audio);
    audios[track.id] = audio;
    const button = document.createElement("button");
    button.type = "button";
    button.id = `track-${track.id}`;
    button.setAttribute("role", "radio");
    button.textContent = track.label;
    button.title = `${track.label}: played at ${db(track.gain)} to match the quietest track's loudness (RMS)`;
    button.addEventListener("click", () => { select(track.id); button.blur(); });
    $("switch").appendChild(button);
  }

  function select(id) {
    const chosen = audios[id];
    if (!chosen) return false;
    const t = clock.currentTime;
    for (const [key, audio] of Object.entries(audios)) if (key !== id) audio.muted = true;
    if (chosen !== clock && Math.abs(chosen.currentTime - t) > SOFT_SYNC_S) chosen.currentTime = t;
    chosen.muted = false;
    if (id !== active) { previous = active; active = id; }
    for (const key of Object.keys(audios)) $(`track-${key}`).setAttribute("aria-checked", String(key === active));
    return true;
  }

  // ---- keeping every track on the clock ---------------------------------------------------------------------
  function syncAll(force) {
    const t = clock.currentTime;
    for (const audio of others()) {
      audio.playbackRate = clock.playbackRate;
      if (force || Math.abs(audio.currentTime - t) > HARD_SYNC_S) audio.currentTime = t;
    }
  }

  function follow() {
    if (clock.paused) return;
    const t = clock.currentTime;
    for (const audio of others()) {
      const drift = audio.currentTime - t;
      if (Math.abs(drift) > HARD_SYNC_S) audio.currentTime = t;
      const nudge = Math.abs(drift) > SOFT_SYNC_S ? (drift > 0 ? -NUDGE : NUDGE) : 0;
      audio.playbackRate = clock.playbackRate * (1 + nudge);
      const playable = !Number.isFinite(audio.duration) || t < audio.duration - 0.05;
      if (audio.paused && playable) audio.play().catch(() => {});
    }
  }

  function onClock(event, handler) {
    for (const element of [video, ...Object.values(audios)]) {
      element.addEventListener(event, (e) => { if (e.target === clock) handler(); });
    }
  }

  function seek(t) {
    const end = Number.isFinite(clock.duration) ? clock.duration : data.duration_s;
    clock.currentTime = Math.min(Math.max(0, t), end);
    syncAll(true);
  }

  function togglePlay() {
    if (clock.paused) clock.play().catch(() => {});
    else clock.pause();
  }

  // ---- plots --------------------------------------------------------------------------------------------------
  const plots = [];
  const plotWidth = (canvas) => canvas.clientWidth - MARGIN_LEFT - MARGIN_RIGHT;
  const xOf = (canvas, t) => MARGIN_LEFT + (t / data.duration_s) * plotWidth(canvas);
  const tOf = (canvas, x) => Math.min(Math.max((x - MARGIN_LEFT) / plotWidth(canvas), 0), 1) * data.duration_s;

  function timeTicks(ctx, canvas, height) {
    const steps = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600];
    const step = steps.find((s) => data.duration_s / s <= 10) || 7200;
    ctx.fillStyle = "#7d8591";
    ctx.font = "10px system-ui, sans-serif";
    for (let t = 0; t <= data.duration_s + 1e-9; t += step) {
      const x = xOf(canvas, t);
      ctx.fillRect(x, height - 4, 1, 4);
      ctx.fillText(t < 60 ? `${Number(t.toFixed(1))} s` : fmt(t).replace(/\.0$/, ""), x + 3, height - 2);
    }
  }

  function curve(ctx, canvas, values, frame, y, colour, dash) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 1.5;
    ctx.setLineDash(dash);
    ctx.beginPath();
    let drawing = false;
    values.forEach((v, i) => {
      if (v === null) { drawing = false; return; }
      const x = xOf(canvas, (i + 0.5) * frame);
      if (drawing) ctx.lineTo(x, y(v)); else ctx.moveTo(x, y(v));
      drawing = true;
    });
    ctx.stroke();
    ctx.setLineDash([]);
  }

  function paintIld(ctx, canvas, height) {
    const { output, reference, frame_s: frame } = data.ild;
    const all = output.concat(reference || []).filter((v) => v !== null).map(Math.abs);
    const top = Math.min(40, Math.max(6, Math.ceil(Math.max(0, ...all) / 10) * 10));
    const y = (v) => height / 2 - (Math.max(-top, Math.min(top, v)) / top) * (height / 2 - 8);
    ctx.fillStyle = "#7d8591";
    ctx.font = "10px system-ui, sans-serif";
    for (const v of [top, top / 2, 0, -top / 2, -top]) {
      ctx.fillRect(MARGIN_LEFT, y(v), plotWidth(canvas), v === 0 ? 1 : 0.4);
      ctx.fillText(`${v > 0 ? "+" : ""}${v}`, 4, y(v) + 3);
    }
    ctx.fillText("L", MARGIN_LEFT - 12, 12);
    ctx.fillText("R", MARGIN_LEFT - 12, height - 12);
    if (reference) curve(ctx, canvas, reference, frame, y, "#ffb14f", [4, 3]);
    curve(ctx, canvas, output, frame, y, "#4fb3ff", []);
    timeTicks(ctx, canvas, height);
  }

  const LUT = (() => { // dark blue -> purple -> orange -> pale yellow, 256 entries
    const stops = [[0, 0, 4], [60, 15, 110], [150, 40, 120], [235, 100, 80], [252, 230, 160]];
    const lut = new Uint8ClampedArray(256 * 3);
    for (let i = 0; i < 256; i++) {
      const f = (i / 255) * (stops.length - 1);
      const k = Math.min(stops.length - 2, Math.floor(f));
      for (let c = 0; c < 3; c++) lut[i * 3 + c] = stops[k][c] + (stops[k + 1][c] - stops[k][c]) * (f - k);
    }
    return lut;
  })();

  function spectrogramImage(encoded) {
    const { rows, columns } = data.spectrograms;
    const bytes = Uint8Array.from(atob(encoded), (ch) => ch.charCodeAt(0));
    const image = new ImageData(columns, rows);
    for (let r = 0; r < rows; r++) {
      const screenRow = rows - 1 - r; // row 0 is 0 Hz: drawn at the bottom
      for (let c = 0; c < columns; c++) {
        const v = bytes[r * columns + c];
        const o = (screenRow * columns + c) * 4;
        image.data[o] = LUT[v * 3]; image.data[o + 1] = LUT[v * 3 + 1]; image.data[o + 2] = LUT[v * 3 + 2];
        image.data[o + 3] = 255;
      }
    }
    const small = document.createElement("canvas");
    small.width = columns; small.height = rows;
    small.getContext("2d").putImageData(image, 0, 0);
    return small;
  }

  function paintSpectrogram(side) {
    const image = spectrogramImage(data.spectrograms[side]);
    return (ctx, canvas, height) => {
      const start = data.spectrograms.start_s || 0;
      const x0 = xOf(canvas, start);
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(image, x0, 0, xOf(canvas, data.duration_s) - x0, height - 10);
      ctx.fillStyle = "#7d8591";
      ctx.font = "10px system-ui, sans-serif";
      ctx.fillText(`${(data.spectrograms.top_hz / 1000).toFixed(0)}k`, 4, 10);
      ctx.fillText("0 Hz", 4, height - 12);
      timeTicks(ctx, canvas, height);
    };
  }

  function addPlot(id, paint) {
    const canvas = $(id);
    const plot = { canvas, paint, base: document.createElement("canvas") };
    canvas.addEventListener("click", (e) => seek(tOf(canvas, e.offsetX)));
    plots.push(plot);
  }

  function layout() {
    const ratio = window.devicePixelRatio || 1;
    for (const plot of plots) {
      const { canvas, base } = plot;
      const width = canvas.clientWidth, height = Number(canvas.getAttribute("height"));
      canvas.style.height = `${height}px`;
      for (const c of [canvas, base]) { c.width = Math.round(width * ratio); c.height = Math.round(height * ratio); }
      const ctx = base.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      plot.paint(ctx, canvas, height);
      canvas.dataset.x0 = String(MARGIN_LEFT); // where 0 s and the end lie, in CSS px (read by the tests)
      canvas.dataset.x1 = String(MARGIN_LEFT + plotWidth(canvas));
    }
  }

  function drawPlayheads() {
    const t = clock.currentTime;
    const ratio = window.devicePixelRatio || 1;
    for (const { canvas, base } of plots) {
      const ctx = canvas.getContext("2d");
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(base, 0, 0);
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(xOf(canvas, t) - 0.5, 0, 1.5, canvas.height / ratio);
    }
    $("time").textContent = `${fmt(t)} / ${fmt(data.duration_s)}`;
    $("play").textContent = clock.paused ? "play" : "pause";
  }

  // ---- the run report and the metrics --------------------------------------------------------------------------
  function rows(table, entries) {
    for (const [key, value] of entries) {
      const tr = table.insertRow();
      tr.insertCell().textContent = key;
      tr.insertCell().textContent = value;
    }
  }

  function reportRows(r) {
    if (!r) return [["report", "none given (ccs-run --report run.json, then ccs-view --report run.json)"]];
    const rtf = r.duration_s > 0 ? r.wall_s / r.duration_s : null;
    const c = r.clip;
    const clip = c ? `${c.mode}: peak ${Number(c.peak).toFixed(3)}, ${c.action}${c.gain_db ? ` (${c.gain_db} dB)` : ""}` : "none";
    return [
      ["input", r.input], ["output", r.output], ["status", r.status],
      ["engine", r.engine], ["precision", r.precision],
      ["model sha256", String(r.model_sha256 || "").slice(0, 16)],
      ["media", `${Number(r.duration_s).toFixed(2)} s`], ["wall", `${Number(r.wall_s).toFixed(2)} s`],
      ["RTF", rtf === null ? "?" : `${rtf.toFixed(3)} (${(1 / rtf).toFixed(1)}x real time)`],
      ["windows", r.windows], ["visual network", `${r.crops_computed} computed, ${r.crops_shared} shared, ${r.crops_reused} reused`],
      ["visual rate", r.visual_rate], ["V-TTA", r.tta], ["hop", `${r.hop_samples} samples`],
      ["output rate", `${r.output_rate_hz} Hz`], ["clipping", clip],
    ].filter(([, v]) => v !== undefined);
  }

  function fillReport() {
    const levels = data.tracks.map((t) => [`gain ${t.id}`, `${db(t.gain)} (loudness match)`]);
    rows($("report-table"), reportRows(data.report).concat(levels));
    if (data.metrics) {
      $("metrics-title").hidden = false;
      const entries = data.metrics.skipped ? [["skipped", data.metrics.skipped]] : Object.entries(data.metrics);
      rows($("metrics-table"), entries.map(([k, v]) => [k, typeof v === "number" ? v.toPrecision(5) : v]));
    }
  }

  // ---- wiring -------------------------------------------------------------------------------------------------
  function keys(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const actions = {
      a: () => select("original"), b: () => select("binaural"), r: () => select("reference"),
      x: () => select(previous), " ": togglePlay,
      ArrowLeft: () => seek(clock.currentTime - 5), ArrowRight: () => seek(clock.currentTime + 5),
    };
    const action = actions[e.key];
    if (!action) return;
    e.preventDefault();
    e.stopPropagation();
    action();
  }

  function start() {
    data.tracks.forEach(addTrack);
    select(active);
    $("ild-frame").textContent = String(data.ild.frame_s);
    $("ild-legend").innerHTML = data.ild.reference
      ? '(<span class="legend-out">output</span>, <span class="legend-ref">reference</span>)' : "";
    video.src = data.urls[data.video];
    video.addEventListener("error", () => {
      clock = audios.binaural;
      $("notice").hidden = false;
      $("notice").textContent = "This browser cannot play the video stream; the sound, the switch and the plots still work.";
      syncAll(true);
    });
    video.addEventListener("volumechange", () => { // the sound comes from the tracks: never twice
      if (!video.muted) { video.muted = true; select(active); }
    });
    onClock("play", () => { syncAll(true); follow(); });
    onClock("pause", () => { for (const a of others()) a.pause(); syncAll(true); });
    onClock("seeked", () => syncAll(true));
    onClock("ratechange", () => syncAll(false));
    $("play").addEventListener("click", (e) => { togglePlay(); e.currentTarget.blur(); });
    window.addEventListener("keydown", keys, true);
    window.addEventListener("keyup", (e) => { if (e.key === " ") e.preventDefault(); }, true);
    addPlot("ild", paintIld);
    addPlot("spec-left", paintSpectrogram("left"));
    addPlot("spec-right", paintSpectrogram("right"));
    layout();
    window.addEventListener("resize", layout);
    fillReport();
    const frame = () => { follow(); drawPlayheads(); requestAnimationFrame(frame); };
    requestAnimationFrame(frame);
    setInterval(follow, 250); // rAF pauses in a background tab; the sound must stay on the clock
  }

  window.ccsView = {
    data, select, seek, togglePlay, audios,
    clock: () => clock, active: () => active,
    timeAt: (id, x) => tOf($(id), x),
  };
  start();
})();
