// Waypoint live play: the websocket to /waypoint/live/<node id>/ws (protocol: worldengine/live_protocol.py).
// No side effects on import.

// Binary frame packet: uint32 big-endian header length, JSON header, image bytes.
export function unpackFrame(buffer) {
  const view = new DataView(buffer);
  const size = view.getUint32(0, false);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, size)));
  return { header, image: new Uint8Array(buffer, 4 + size) };
}

// Rolling percentile over the last `size` samples.
export class Window {
  constructor(size = 120) { this.size = size; this.values = []; }
  push(v) { this.values.push(v); if (this.values.length > this.size) this.values.shift(); }
  percentile(q) {
    if (!this.values.length) return null;
    const sorted = [...this.values].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.round(q * (sorted.length - 1)))];
  }
}

// Events per second over the last 2 s.
export class Rate {
  constructor() { this.times = []; }
  tick(now = performance.now()) { this.times.push(now); this.trim(now); }
  trim(now) { while (this.times.length && now - this.times[0] > 2000) this.times.shift(); }
  perSecond(now = performance.now()) { this.trim(now); return this.times.length / 2; }
}

export class LiveConnection {
  // handlers: onFrame(header, imageBytes), onEvent(json), onClose(reason)
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.seq = 0;
    this.sentAt = new Map();   // control seq -> performance.now() at send (bounded)
  }

  get open() { return this.ws && this.ws.readyState === WebSocket.OPEN; }

  connect() {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return this.ready;
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.ready = new Promise((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error("live socket failed to open"));
    });
    ws.onmessage = (msg) => {
      if (typeof msg.data === "string") {
        this.handlers.onEvent(JSON.parse(msg.data));
      } else {
        const { header, image } = unpackFrame(msg.data);
        this.handlers.onFrame(header, image);
      }
    };
    ws.onclose = (event) => {
      if (this.ws === ws) this.ws = null;
      this.handlers.onClose(event.reason || `closed (${event.code})`);
    };
    return this.ready;
  }

  send(message) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  // Send the held codes + mouse motion since the last control; remembers the send time for latency.
  sendControl(buttons, mouse, scroll) {
    const t = performance.now();
    const seq = ++this.seq;
    if (!this.send({ type: "control", seq, t, buttons: [...buttons].slice(0, 32), mouse, scroll })) return false;
    this.sentAt.set(seq, t);
    if (this.sentAt.size > 2000) this.sentAt.delete(this.sentAt.keys().next().value);
    return true;
  }

  // Milliseconds from sending control `seq` to now (null when unknown).
  latencyOf(seq) {
    const t = this.sentAt.get(seq);
    return t === undefined ? null : performance.now() - t;
  }

  close() {
    if (this.ws) this.ws.close();
    this.ws = null;
  }
}
