// Waypoint live play widget: a canvas on the "Live Play (Waypoint)" node that shows the world and sends
// keyboard / mouse / gamepad input to /waypoint/live/<node id>/ws. Public frontend API only:
// app.registerExtension, beforeRegisterNodeDef, node.addDOMWidget, api.apiURL / api.fetchApi.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { LAYOUTS, MOUSE_BUTTONS, buildKeymap, readGamepads } from "./live_input.js";
import { LiveConnection, Rate, Window } from "./live_socket.js";

const NODE_TYPE = "WaypointLivePlay";
const MOUSE_UNIT = 0.01;            // 1 px of mouse motion at sensitivity 1 = 0.01 model mouse units
const MOUSE_FLUSH_MS = 1000 / 120;  // mouse motion is sent at most 120 times a second
const MAX_SUB_SPACING_MS = 100;     // decoded latents carry 4 frames: spread over the latent interval
const COMPILE_POLL_MS = 2000;       // how often the HUD asks for the compile status while it compiles

// While a widget captures input, every key event is handled here first: a capture listener on window,
// added when this module loads (before ComfyUI's own keybinding listeners), that stops the event, so
// no ComfyUI shortcut (w, q, r, Ctrl+S, ...) fires while playing.
let captured = null;
function swallowKey(event) {
  if (!captured) return;
  captured.handleKey(event);
  event.preventDefault();
  event.stopImmediatePropagation();
}
for (const type of ["keydown", "keyup", "keypress"]) window.addEventListener(type, swallowKey, true);

// For tests and curious users: live widgets by node id.
window.__waypointLive = window.__waypointLive || { widgets: {} };
// What a widget showed, by node id, for the widget of the same node made again when the graph is
// reloaded in place (undo/redo reload the whole graph: every node is removed and re-created).
const remembered = new Map();
const FORGET_AFTER_MS = 1500;   // a removed node not back by then is really gone: free its server world

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}

const STYLE = `
.wp-live { position: relative; display: flex; flex-direction: column; gap: 4px; font: 11px monospace;
  color: #ddd; background: #111; border-radius: 4px; overflow: hidden; }
.wp-live canvas { flex: 1; min-height: 0; width: 100%; object-fit: contain; background: #000; outline: none;
  image-rendering: pixelated; cursor: crosshair; }
.wp-live canvas.capturing { box-shadow: inset 0 0 0 2px #4af; }
.wp-live .hud { position: absolute; top: 4px; left: 6px; white-space: pre; pointer-events: none;
  text-shadow: 0 0 3px #000; }
.wp-live .hint { position: absolute; top: 40%; width: 100%; text-align: center; pointer-events: none; opacity: .8; }
.wp-live .bar { display: flex; flex-wrap: wrap; gap: 4px; padding: 0 4px 4px; }
.wp-live button { font: 11px sans-serif; padding: 2px 6px; }
.wp-live button.on { background: #a33; color: #fff; }
.wp-live .settings { display: none; padding: 4px; gap: 6px; flex-wrap: wrap; }
.wp-live .settings.open { display: flex; }
.wp-live .error { color: #f77; }
.wp-live .info { color: #9cf; }`;

class LiveWidget {
  constructor(node) {
    this.node = node;
    this.keys = new Set();          // codes held on the keyboard
    this.mouseButtons = new Set();
    this.padHeld = new Set();
    this.mouse = [0, 0];            // motion not yet sent, in px
    this.scroll = 0;
    this.sensitivity = 1;
    this.invertY = false;
    this.keymap = buildKeymap(Object.keys(LAYOUTS)[0], "");
    this.conn = null;
    this.status = {};
    this.message = "";
    this.queued = null;             // {recorded_frames, seed, atQueue} of the last queue's output track
    this.stats = { received: 0, drawn: 0, lastHeader: null, latency: new Window(200), controls: new Rate(),
                   drawnRate: new Rate(), receivedRate: new Rate() };
    this.drawChain = Promise.resolve();
    this.nextDrawAt = 0;
    this.lastLatentAt = 0;
    this.latentInterval = 100;
    this.buildDom();
    this.timers = [setInterval(() => this.updateHud(), 250), setInterval(() => this.pollGamepads(), 1000 / 60)];
  }

  // ---- DOM -------------------------------------------------------------------------------------
  buildDom() {
    if (!document.getElementById("wp-live-style")) document.head.append(el("style", { id: "wp-live-style", textContent: STYLE }));
    this.canvas = el("canvas", { width: 256, height: 144, tabIndex: 0, className: "wp-live-canvas" });
    this.hud = el("div", { className: "hud" });
    this.hint = el("div", { className: "hint", textContent: "Queue once, then click here and press Play (Esc releases)" });
    const button = (label, title, onclick) => el("button", { textContent: label, title, onclick });
    this.playButton = button("Play", "Start / pause the live world", () => (this.status.playing ? this.pause() : this.play()));
    this.recordButton = button("Rec", "Record on/off (on again after off restarts from the seed)", () => this.toggleRecord());
    this.settingsPanel = this.buildSettings();
    const bar = el("div", { className: "bar" }, [
      this.playButton,
      button("Reset", "Back to the seed world (clears the recording)", () => this.reset()),
      button("Snapshot", "Save the live world to output/waypoint/live_*.safetensors", () => this.command({ type: "snapshot" })),
      this.recordButton,
      button("Track", "Download the recorded control track (JSON)", () => this.downloadTrack()),
      button("Clip", "Export the last 10 s shown as output/waypoint/live_clip_*.mp4", () =>
        this.command({ type: "export", seconds: 10, format: "mp4" })),
      button("⚙", "Settings", () => this.settingsPanel.classList.toggle("open")),
    ]);
    this.element = el("div", { className: "wp-live" }, [this.canvas, this.hud, this.hint, bar, this.settingsPanel]);
    this.canvas.addEventListener("mousedown", (e) => this.onCanvasMouseDown(e));
    this.canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    this.canvas.addEventListener("blur", () => this.release());
    this.onDocMouseMove = (e) => this.onMouseMove(e);
    this.onDocMouseButton = (e) => this.onMouseButton(e);
    this.onWheel = (e) => this.onWheelEvent(e);
    this.onLockChange = () => { if (this.locked && document.pointerLockElement !== this.canvas) this.release(); };
  }

  buildSettings() {
    const sens = el("input", { type: "range", min: 0.1, max: 5, step: 0.1, value: 1, title: "Mouse sensitivity" });
    sens.oninput = () => { this.sensitivity = Number(sens.value); };
    const layout = el("select", {}, Object.keys(LAYOUTS).map((name) => el("option", { value: name, textContent: name })));
    const remap = el("input", { type: "text", placeholder: "remap: ArrowUp=W, KeyE=Space", size: 24 });
    const applyKeys = () => {
      try { this.keymap = buildKeymap(layout.value, remap.value); this.message = ""; }
      catch (err) { this.message = String(err.message || err); }
    };
    layout.onchange = applyKeys;
    remap.onchange = applyKeys;
    const invert = el("input", { type: "checkbox", title: "Invert mouse Y" });
    invert.onchange = () => { this.invertY = invert.checked; };
    const preview = el("select", {}, ["node default", "latent", "decoded"].map((v) => el("option", { value: v, textContent: v })));
    preview.onchange = () => { if (preview.value !== "node default") this.command({ type: "settings", preview: preview.value }); };
    const label = (text, input) => el("label", {}, [text + " ", input]);
    return el("div", { className: "settings" }, [label("sens", sens), label("keys", layout), remap,
      label("invert Y", invert), label("preview", preview)]);
  }

  // ---- connection ------------------------------------------------------------------------------
  socketUrl() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}${api.apiURL(`/waypoint/live/${encodeURIComponent(this.node.id)}/ws`)}`;
  }

  async connect() {
    if (this.conn && this.conn.open) return true;
    this.conn = new LiveConnection(this.socketUrl(), {
      onFrame: (header, image) => this.onFrame(header, image),
      onEvent: (event) => this.onEvent(event),
      onClose: (reason) => this.onClose(reason),
    });
    this.bind(this.node.id);
    try { await this.conn.connect(); } catch (err) { this.message = String(err.message || err); return false; }
    const rect = this.canvas.getBoundingClientRect();
    const scale = window.devicePixelRatio || 1;
    const clamp = (v) => Math.max(16, Math.min(4096, Math.round(v * scale) || 640));
    this.conn.send({ type: "settings", max_width: clamp(rect.width), max_height: clamp(rect.height) });
    return true;
  }

  command(message) {
    if (!this.conn || !this.conn.send(message)) this.message = "not connected: press Play";
  }

  async play() {
    if (!(await this.connect())) return;
    this.hint.textContent = "";
    this.sendControl();
    this.conn.send({ type: "play" });
  }

  pause() { this.command({ type: "pause" }); }

  reset() {
    this.command({ type: "reset" });
    this.status = { ...this.status, recorded_frames: 0 };   // the server's status confirms it
  }

  // Restore what the widget of this node id showed before the graph was reloaded (undo), and register.
  bind(nodeId) {
    window.__waypointLive.widgets[nodeId] = this;
    const before = remembered.get(String(nodeId));
    if (before) Object.assign(this, { message: before.message, queued: before.queued, status: before.status });
  }

  toggleRecord() { this.command({ type: "record", on: !this.status.recording }); }

  async downloadTrack() {
    const response = await api.fetchApi(`/waypoint/live/${encodeURIComponent(this.node.id)}/track`);
    if (!response.ok) { this.message = await response.text(); return; }
    const blob = new Blob([JSON.stringify(await response.json())], { type: "application/json" });
    const link = el("a", { href: URL.createObjectURL(blob), download: `waypoint_track_${this.node.id}.json` });
    link.click();
    URL.revokeObjectURL(link.href);
  }

  onEvent(event) {
    if (event.type === "status") {
      if (this.queued && this.queued.atQueue === undefined) this.queued.atQueue = event.recorded_frames;
      this.status = event;
      this.playButton.textContent = event.playing ? "Pause" : "Play";
      this.recordButton.classList.toggle("on", !!event.recording);
    } else if (event.type === "error") {
      this.message = event.message;
    } else if (event.type === "snapshot") {
      this.message = `snapshot: ${event.path}`;
    } else if (event.type === "export") {
      this.message = `clip: ${event.path}`;
      const slash = event.path.lastIndexOf("/");
      const query = new URLSearchParams({ filename: event.path.slice(slash + 1), subfolder: event.path.slice(0, Math.max(0, slash)), type: "output" });
      el("a", { href: api.apiURL(`/view?${query}`), download: event.path.slice(slash + 1) }).click();
    }
  }

  onClose(reason) {
    this.status = { ...this.status, playing: false };
    this.playButton.textContent = "Play";
    if (!this.destroyed) this.message = this.message || `disconnected: ${reason}`;
  }

  // ---- frames ----------------------------------------------------------------------------------
  onFrame(header, image) {
    const now = performance.now();
    this.stats.received += 1;
    this.stats.receivedRate.tick(now);
    if (header.sub === 0) {
      if (this.lastLatentAt) this.latentInterval = 0.8 * this.latentInterval + 0.2 * (now - this.lastLatentAt);
      this.lastLatentAt = now;
    }
    const bitmap = createImageBitmap(new Blob([image], { type: header.mime }));
    // Decode in parallel, draw in order; the sub-frames of one latent are spread over its interval.
    this.drawChain = this.drawChain.then(async () => {
      const picture = await bitmap;
      const spacing = header.of > 1 ? Math.min(MAX_SUB_SPACING_MS, this.latentInterval / header.of) : 0;
      const wait = this.nextDrawAt - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      this.draw(picture, header);
      this.nextDrawAt = performance.now() + spacing;
    }).catch((err) => { this.message = `frame: ${err.message || err}`; });
  }

  draw(picture, header) {
    if (this.canvas.width !== picture.width || this.canvas.height !== picture.height) {
      this.canvas.width = picture.width;
      this.canvas.height = picture.height;
    }
    this.canvas.getContext("2d").drawImage(picture, 0, 0);
    picture.close();
    this.stats.drawn += 1;
    this.stats.drawnRate.tick();
    this.stats.lastHeader = header;
    if (header.sub === 0 && header.control_seq !== null && this.conn) {
      const latency = this.conn.latencyOf(header.control_seq);
      if (latency !== null) this.stats.latency.push(latency);
    }
    if (header.sub === header.of - 1 && this.conn) this.conn.send({ type: "ack", frame: header.ordinal });
  }

  // ---- input -----------------------------------------------------------------------------------
  onCanvasMouseDown(event) {
    if (captured !== this) {
      event.preventDefault();
      this.capture();
      return;
    }
    this.onMouseButton(event);
  }

  capture() {
    if (captured && captured !== this) captured.release();
    captured = this;
    this.canvas.focus();
    this.canvas.classList.add("capturing");
    try {
      const request = this.canvas.requestPointerLock?.();
      if (request && request.catch) request.catch(() => {});   // headless / denied: plain mouse deltas still work
    } catch (err) { /* pointer lock is optional */ }
    this.locked = false;
    document.addEventListener("pointerlockchange", this.onLockChange);
    setTimeout(() => { this.locked = document.pointerLockElement === this.canvas; }, 100);
    document.addEventListener("mousemove", this.onDocMouseMove, true);
    document.addEventListener("mouseup", this.onDocMouseButton, true);
    this.canvas.addEventListener("wheel", this.onWheel, { passive: false });
    if (!this.status.playing) this.play();
  }

  release() {
    if (captured !== this) return;
    captured = null;
    this.canvas.classList.remove("capturing");
    document.removeEventListener("pointerlockchange", this.onLockChange);
    document.removeEventListener("mousemove", this.onDocMouseMove, true);
    document.removeEventListener("mouseup", this.onDocMouseButton, true);
    this.canvas.removeEventListener("wheel", this.onWheel);
    if (document.pointerLockElement === this.canvas) document.exitPointerLock();
    this.locked = false;
    this.keys.clear();
    this.mouseButtons.clear();
    this.sendControl();   // nothing held any more
    if (document.activeElement === this.canvas) this.canvas.blur();   // ComfyUI's shortcuts work again
  }

  handleKey(event) {
    if (event.type === "keydown" && event.code === "Escape") {
      this.release();
      return;
    }
    const code = this.keymap[event.code];
    if (code === undefined || event.type === "keypress") return;
    const had = this.keys.has(code);
    if (event.type === "keydown") this.keys.add(code);
    else this.keys.delete(code);
    if (had !== this.keys.has(code)) this.sendControl();
  }

  onMouseMove(event) {
    if (captured !== this) return;
    this.mouse[0] += event.movementX || 0;
    this.mouse[1] += event.movementY || 0;
    if (!this.mouseTimer) this.mouseTimer = setTimeout(() => { this.mouseTimer = null; this.sendControl(); }, MOUSE_FLUSH_MS);
  }

  onMouseButton(event) {
    if (captured !== this) return;
    const code = MOUSE_BUTTONS[event.button];
    if (code === undefined) return;
    if (event.type === "mousedown") this.mouseButtons.add(code);
    else this.mouseButtons.delete(code);
    event.preventDefault();
    this.sendControl();
  }

  onWheelEvent(event) {
    event.preventDefault();
    this.scroll = event.deltaY > 0 ? -1 : event.deltaY < 0 ? 1 : 0;
    this.sendControl();
  }

  pollGamepads() {
    if (!this.status.playing || !navigator.getGamepads) return;
    const { held, lookX, lookY } = readGamepads(1 / 60);
    const changed = held.size !== this.padHeld.size || [...held].some((c) => !this.padHeld.has(c));
    this.padHeld = held;
    this.mouse[0] += lookX;
    this.mouse[1] += lookY;
    if (changed || lookX || lookY) this.sendControl();
  }

  sendControl() {
    if (!this.conn || !this.conn.open) return;
    const scale = MOUSE_UNIT * this.sensitivity;
    const mouse = [this.mouse[0] * scale, this.mouse[1] * scale * (this.invertY ? -1 : 1)];
    const buttons = new Set([...this.keys, ...this.mouseButtons, ...this.padHeld]);
    if (this.conn.sendControl(buttons, mouse, this.scroll)) {
      this.stats.controls.tick();
      this.mouse = [0, 0];
      this.scroll = 0;
    }
  }

  // ---- HUD -------------------------------------------------------------------------------------
  updateHud() {
    const s = this.status;
    const p50 = this.stats.latency.percentile(0.5);
    const lines = [
      `latent ${fmt(s.latent_fps)} fps  shown ${fmt(this.stats.drawnRate.perSecond())} fps  ` +
        `ctrl ${fmt(this.stats.controls.perSecond())}/s`,
      `input→frame p50 ${p50 === null ? "–" : p50.toFixed(0) + " ms"}  step ${fmt(s.step_ms)} ms` +
        (s.compile ? `  (${s.compile})` : ""),
      `frame ${s.frame_index ?? "–"}  rec ${s.recording ? "●" : "○"} ${s.recorded_frames ?? 0}  ` +
        `${captured === this ? "[captured: Esc releases]" : ""}`,
    ];
    this.hud.textContent = lines.join("\n");
    this.refreshCompileStatus(s);
    if (this.queued) this.hud.append(el("div", { className: "info", textContent: this.queuedLine() }));
    if (this.message) {
      const isInfo = /^(snapshot|clip):/.test(this.message);
      this.hud.append(el("div", { className: isInfo ? "info" : "error", textContent: this.message }));
    }
  }

  // Status events come on play/pause/reset, not per frame: while the model compiles in the background
  // (status.compile "eager, compiling…"), ask the node's status route now and then so the HUD shows the
  // switch to "compiled" (or the compile failure) when it happens.
  refreshCompileStatus(s) {
    const now = performance.now();
    if (!String(s.compile ?? "").includes("compiling") || this.compilePoll > now || this.destroyed) return;
    this.compilePoll = now + COMPILE_POLL_MS;
    api.fetchApi(`/waypoint/live/${encodeURIComponent(this.node.id)}`)
      .then((response) => (response.ok ? response.json() : null))
      .then((info) => {
        const compile = info?.live?.compile;
        if (compile && this.status.compile !== compile) this.status = { ...this.status, compile };
      })
      .catch(() => {});
  }

  // What the last queue output, and whether the recording changed since (Reset, more play).
  queuedLine() {
    const { recorded_frames: queuedFrames, seed, atQueue } = this.queued;
    const now = this.status.recorded_frames;
    const line = `queued: output track of ${queuedFrames} frame(s), seed ${seed}`;
    if (now === undefined || now === atQueue) return line;
    return `${line}; recording now ${now} frame(s): queue again to output it`;
  }

  destroy() {
    this.destroyed = true;
    this.release();
    this.timers.forEach(clearInterval);
    if (this.conn) this.conn.close();
    const id = this.node.id;
    if (window.__waypointLive.widgets[id] === this) delete window.__waypointLive.widgets[id];
    remembered.set(String(id), { message: this.message, queued: this.queued, status: this.status });
    // Free the server's world only if the node is really gone, not re-created by a graph reload.
    setTimeout(() => {
      if (app.graph?.getNodeById(id)?.type === NODE_TYPE) return;
      remembered.delete(String(id));
      api.fetchApi(`/waypoint/live/${encodeURIComponent(id)}`, { method: "DELETE" }).catch(() => {});
    }, FORGET_AFTER_MS);
  }
}

function fmt(value) {
  return typeof value === "number" ? value.toFixed(1) : "–";
}

app.registerExtension({
  name: "waypoint.LivePlay",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE_TYPE) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      const live = new LiveWidget(this);
      this.waypointLive = live;
      this.addDOMWidget("live_view", "waypoint_live", live.element, {
        serialize: false,
        hideOnZoom: false,
        getValue: () => undefined,
        setValue: () => {},
        getMinHeight: () => 300,
        getHeight: () => 360,
      });
      this.setSize([Math.max(this.size[0], 520), Math.max(this.size[1], 480)]);
      return result;
    };
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      this.waypointLive?.bind(this.id);   // the id is known from here on (loaded or re-created node)
      return result;
    };
    const onRemoved = nodeType.prototype.onRemoved;
    nodeType.prototype.onRemoved = function () {
      this.waypointLive?.destroy();
      return onRemoved?.apply(this, arguments);
    };
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      const info = output?.waypoint_live?.[0];
      if (info && this.waypointLive) {
        const atQueue = this.waypointLive.status.recorded_frames;   // undefined before the first connect
        this.waypointLive.queued = { recorded_frames: info.recorded_frames, seed: info.seed, atQueue };
        this.waypointLive.hint.textContent = this.waypointLive.status.playing ? "" : "Click here and press Play";
      }
      return onExecuted?.apply(this, arguments);
    };
  },
});
