"""The preview's page: one self-contained HTML document (no external assets, so it works on a
rig with no network), which polls `stats.json` and reloads `snapshot.jpg` when a new picture is
there. URLs are relative, so the page works behind an ssh tunnel or a proxy path too."""

from __future__ import annotations

import html

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__ - live preview</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f4f4; color: #141414; }
  header { padding: 8px 14px; background: #20242a; color: #fff; display: flex; gap: 18px;
           align-items: baseline; flex-wrap: wrap; }
  header h1 { font-size: 17px; margin: 0; }
  #phase { font-weight: 600; }
  #online.off { color: #e69f00; font-weight: 600; }
  main { display: flex; gap: 14px; padding: 12px; flex-wrap: wrap; align-items: flex-start; }
  #picture { flex: 1 1 640px; min-width: 320px; }
  #snap { width: 100%; height: auto; background: #ddd; display: block; }
  aside { flex: 0 0 340px; display: flex; flex-direction: column; gap: 10px; }
  section { background: #fff; border: 1px solid #d6d6d6; border-radius: 4px; padding: 8px 10px; }
  section h2 { font-size: 13px; margin: 0 0 6px; text-transform: uppercase; letter-spacing: .04em;
               color: #444; }
  table { border-collapse: collapse; width: 100%; }
  td { padding: 1px 0; }
  td.v { text-align: right; font-variant-numeric: tabular-nums; font-weight: 600; white-space: nowrap;
         padding-left: 8px; }
  #calib td.v { white-space: normal; }
  .bad { color: #b03000; }
  .note { color: #555; font-size: 12px; }
  svg { display: block; width: 100%; height: 90px; background: #fafafa; }
  footer { padding: 4px 14px 12px; color: #666; font-size: 12px; }
</style>
</head>
<body>
<header>
  <h1>__TITLE__</h1>
  <span id="phase">connecting ...</span>
  <span id="detail" class="note"></span>
  <span id="online"></span>
</header>
<main>
  <div id="picture">
    <img id="snap" src="snapshot.jpg?seq=first" alt="the newest frame with its events">
    <div id="mode" class="note"></div>
  </div>
  <aside>
    <section>
      <h2>Counters</h2>
      <table id="counters"></table>
    </section>
    <section>
      <h2>Events</h2>
      <table id="events"></table>
    </section>
    <section>
      <h2>Frame histogram</h2>
      <svg id="hist" viewBox="0 0 256 100" preserveAspectRatio="none"></svg>
      <table id="frame"></table>
      <div class="note"><span id="hist-source">raw 8-bit values, all Bayer sites</span>; the
        orange bar is 252-255</div>
    </section>
    <section id="calib-box" hidden>
      <h2>Calibration</h2>
      <table id="calib"></table>
      <div class="note" id="calib-note"></div>
    </section>
    <section>
      <h2>Preview</h2>
      <table id="preview"></table>
    </section>
  </aside>
</main>
<footer>picture: <a href="snapshot.png">snapshot.png</a> (lossless; the page shows
  snapshot.jpg) &middot; numbers: <a href="stats.json">stats.json</a> &middot; the page polls
  them at up to the camera rate</footer>
<script>
"use strict";
const img = document.getElementById("snap");
let shown = null, loading = false, period = 250;
img.onload = () => {
  loading = false;
  // fill the column, but never enlarge a picture more than 1.5 times
  img.style.maxWidth = Math.round(1.5 * img.naturalWidth) + "px";
};
img.onerror = () => { loading = false; };
function fmt(v, digits) {
  if (v === undefined || v === null) return "-";
  if (typeof v !== "number") return String(v);
  return v.toLocaleString("en-US", {maximumFractionDigits: digits === undefined ? 0 : digits});
}
function pct(v) { return v === undefined || v === null ? "-" : (100 * v).toFixed(2) + " %"; }
function rows(id, list) {
  const t = document.getElementById(id);
  t.replaceChildren();
  for (const [name, value, bad] of list) {
    const tr = t.insertRow();
    tr.insertCell().textContent = name;
    const td = tr.insertCell();
    td.textContent = value;
    td.className = bad ? "v bad" : "v";
  }
}
function histogram(h) {
  const svg = document.getElementById("hist");
  svg.replaceChildren();
  if (!h || !h.length) return;
  const top = Math.max(...h, 1e-9), w = 256 / h.length;
  h.forEach((v, i) => {
    const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const height = 100 * Math.sqrt(v / top);
    r.setAttribute("x", i * w); r.setAttribute("width", w * 0.9);
    r.setAttribute("y", 100 - height); r.setAttribute("height", height);
    r.setAttribute("fill", i === h.length - 1 ? "#e69f00" : "#3b4a5a");
    svg.appendChild(r);
  });
}
function show(s) {
  document.getElementById("phase").textContent = s.phase || "";
  document.getElementById("detail").textContent = s.detail || "";
  const c = s.counters || {};
  const drops = (c.drops_camera || 0) + (c.drops_queue || 0);
  rows("counters", [
    ["pulses sent", fmt(c.pulses)],
    ["frames received", fmt(c.frames_received)],
    ["frames written", fmt(c.frames_written)],
    ["frames dropped (camera / queue)", fmt(drops) + " (" + fmt(c.drops_camera) + " / " +
      fmt(c.drops_queue) + ")", drops > 0],
    ["frames incomplete", fmt(c.incomplete), (c.incomplete || 0) > 0],
    ["trigger events (event camera)", fmt(c.trigger_events)],
    ["recorded", c.elapsed_s === undefined ? "-" : fmt(c.elapsed_s, 1) + " / " +
      fmt(c.duration_s, 1) + " s"],
  ]);
  const e = s.events || {};
  const ev = [
    ["event rate", e.rate_ev_s === undefined ? "-" : fmt(e.rate_ev_s / 1e6, 3) + " Mev/s"],
    ["events recorded", fmt(e.total)],
    ["drawn (last " + fmt(e.window_ms, 1) + " ms)", fmt(e.shown)],
  ];
  if (e.note) ev.push(["note", e.note, true]);
  rows("events", ev);
  const f = s.frame || {};
  histogram(f.histogram);
  document.getElementById("hist-source").textContent = f.source || "raw 8-bit values, all Bayer sites";
  rows("frame", [
    ["saturated (at 255)", pct(f.saturated_share), (f.saturated_share || 0) > 0.01],
    ["dark (0-3)", pct(f.dark_share), (f.dark_share || 0) > 0.25],
    ["mean level", fmt(f.mean, 1)],
    ["exposure / gain", !f.exposure_us ? "-" : fmt(f.exposure_us) + " us / " +
      fmt(f.gain_db, 1) + " dB"],
  ]);
  const cal = s.calibration;
  document.getElementById("calib-box").hidden = !cal;
  if (cal) {
    rows("calib", cal.rows || []);
    document.getElementById("calib-note").textContent = cal.note || "";
  }
  const p = s.picture || {};
  rows("preview", [
    ["pictures drawn", fmt(p.rendered)],
    ["frames not drawn (newer came)", fmt(p.frames_skipped)],
    ["drawing / JPEG time", fmt(p.render_ms, 1) + " / " + fmt(p.jpeg_ms, 1) + " ms"],
    ["picture age", fmt(p.age_s, 2) + " s"],
  ]);
  document.getElementById("mode").textContent = (s.alignment || s.mode || "") +
    (s.error ? "  |  preview error: " + s.error : "");
  if (s.rate_hz) period = Math.max(50, 1000 / Math.min(s.rate_hz, 30));
  if (p.seq !== undefined && p.seq !== shown && !loading) {
    loading = true; shown = p.seq;
    img.src = "snapshot.jpg?seq=" + p.seq;
  }
}
async function tick() {
  const online = document.getElementById("online");
  try {
    const r = await fetch("stats.json?t=" + Date.now(), {cache: "no-store"});
    show(await r.json());
    online.textContent = "live"; online.className = "";
  } catch (err) {
    online.textContent = "not connected (the recording ended?)"; online.className = "off";
  }
  setTimeout(tick, period);
}
tick();
</script>
</body>
</html>
"""


def page_html(title: str) -> bytes:
    """The page for a command (`title`, e.g. "rig record")."""
    return _PAGE.replace("__TITLE__", html.escape(title)).encode("utf-8")
