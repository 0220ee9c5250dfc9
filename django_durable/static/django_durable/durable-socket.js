// durable-socket.js: a WebSocket that reconnects and misses nothing (django-durable).
//
// An ES module with no dependency and no build step; types in durable-socket.d.ts.
// The protocol it speaks with the server is documented in docs/reconnecting.md.
//
//   import { DurableSocket } from "/static/django_durable/durable-socket.js";
//   const socket = new DurableSocket("/ws/chat/lobby/", {
//     resume: true,                                     // needs `history = N` to replay
//     heartbeat: { request: "ping", response: "pong" },  // the object's auto-response
//   });
//   socket.addEventListener("message", (event) => console.log(event.data));
//   socket.send("hello");                                // queued while disconnected
//
// Without `resume` and `heartbeat` it behaves as a plain WebSocket that reconnects.

const PROTOCOL_VERSION = "1";
const DEFAULTS = {
  protocols: undefined,
  resume: false,
  heartbeat: null,
  minDelay: 500,
  maxDelay: 30000,
  factor: 2,
  jitter: 0.5,
  maxQueue: 100,
  maxRetries: Infinity,
  connectTimeout: 10000,
  shouldReconnect: (event) => event.code !== 1000,
  WebSocket: undefined,
};
const HEARTBEAT_DEFAULTS = { interval: 20000, timeout: 10000 };

function absoluteUrl(url) {
  const base = typeof location !== "undefined" ? location.href : undefined;
  const parsed = new URL(url, base);
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  else if (parsed.protocol === "https:") parsed.protocol = "wss:";
  return parsed;
}

function makeEvent(type, fields) {
  const event = new Event(type);
  return Object.assign(event, fields);
}

export class DurableSocket extends EventTarget {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(url, options = {}) {
    super();
    this.options = { ...DEFAULTS, ...options };
    if (this.options.heartbeat) {
      this.options.heartbeat = { ...HEARTBEAT_DEFAULTS, ...this.options.heartbeat };
      if (this.options.heartbeat.request === undefined || this.options.heartbeat.response === undefined) {
        throw new TypeError("DurableSocket: heartbeat needs a request and a response");
      }
    }
    this.url = absoluteUrl(url).toString();
    this.binaryType = "blob";
    /** Where this client is in the object's history: {epoch, offset} or null. */
    this.position = null;
    /** The server's id of the current (or last) socket, for resuming. */
    this.socketId = null;
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    this.onreconnect = null;
    this.onresync = null;
    this._queue = [];
    this._ws = null;
    this._attempt = 0;
    this._closed = false;
    this._opened = false;
    this._timers = { retry: null, beat: null, answer: null, connect: null };
    this._readyState = DurableSocket.CONNECTING;
    this._connect();
  }

  get readyState() {
    return this._readyState;
  }

  /** Messages waiting for a connection. */
  get queued() {
    return this._queue.length;
  }

  get protocol() {
    return this._ws ? this._ws.protocol : "";
  }

  get bufferedAmount() {
    return this._ws ? this._ws.bufferedAmount : 0;
  }

  /** Send now, or queue until connected. Throws when the queue is full. */
  send(data) {
    if (this._closed) throw new Error("DurableSocket: send() after close()");
    if (this._ws && this._ws.readyState === 1) {
      this._ws.send(data);
      return;
    }
    if (this._queue.length >= this.options.maxQueue) {
      throw new RangeError(
        `DurableSocket: the send queue is full (${this.options.maxQueue} messages while disconnected)`,
      );
    }
    this._queue.push(data);
  }

  /** Close for good: no reconnection; messages still queued are dropped. */
  close(code = 1000, reason = "") {
    this._closed = true;
    this._clearTimers();
    this._queue = [];
    const ws = this._ws;
    if (ws && ws.readyState <= 1) {
      this._readyState = DurableSocket.CLOSING;
      ws.close(code, reason);
    } else {
      this._finish({ code, reason, wasClean: true });
    }
  }

  /** Drop the current connection and connect again now (resuming where it was). */
  reconnect() {
    if (this._closed) return;
    this._attempt = 0;
    const ws = this._ws;
    if (ws) {
      this._lost(ws, { code: 4000, reason: "reconnect", wasClean: true }, true);
      if (ws.readyState <= 1) ws.close(4000, "reconnect");
    } else {
      clearTimeout(this._timers.retry);
      this._connect();
    }
  }

  // Internals ----------------------------------------------------------------------

  _emit(event) {
    const handler = this["on" + event.type];
    if (typeof handler === "function") handler.call(this, event);
    this.dispatchEvent(event);
  }

  _connectUrl() {
    if (!this.options.resume) return this.url;
    const url = new URL(this.url);
    url.searchParams.set("durable_resume", PROTOCOL_VERSION);
    if (this.position) {
      url.searchParams.set("durable_epoch", this.position.epoch);
      url.searchParams.set("durable_offset", String(this.position.offset));
    }
    if (this.socketId) url.searchParams.set("durable_socket", this.socketId);
    return url.toString();
  }

  _connect() {
    if (this._closed) return;
    const Impl = this.options.WebSocket || globalThis.WebSocket;
    const ws = new Impl(this._connectUrl(), this.options.protocols);
    ws.binaryType = this.options.resume ? "arraybuffer" : this.binaryType;
    this._ws = ws;
    this._readyState = DurableSocket.CONNECTING;
    this._timers.connect = setTimeout(() => {
      if (ws.readyState === 0) ws.close();
    }, this.options.connectTimeout);
    ws.onopen = () => {
      clearTimeout(this._timers.connect);
      this._attempt = 0;
      this._readyState = DurableSocket.OPEN;
      const reconnected = this._opened;
      this._opened = true;
      while (this._queue.length && ws.readyState === 1) ws.send(this._queue.shift());
      this._startHeartbeat(ws);
      this._emit(makeEvent("open", { reconnected }));
    };
    ws.onmessage = (event) => this._receive(ws, event.data);
    ws.onerror = () => this._emit(new Event("error"));
    ws.onclose = (event) => this._lost(ws, event);
  }

  _receive(ws, data) {
    if (ws !== this._ws) return;
    if (!this.options.resume) {
      if (this._isAnswer(data)) return;
      this._emit(new MessageEvent("message", { data }));
      return;
    }
    const frame = this._parse(data);
    if (frame === null) {
      this._emit(makeEvent("error", { message: "DurableSocket: a frame without a header line" }));
      return;
    }
    const { kind, fields, payload } = frame;
    if (kind === "b") {
      const offset = Number(fields[1]);
      this._advance(fields[0], offset);
      if (this._isAnswer(payload)) return;
      this._emit(new MessageEvent("message", { data: this._data(payload), lastEventId: `${fields[0]}:${offset}` }));
    } else if (kind === "m") {
      if (this._isAnswer(payload)) return;
      this._emit(new MessageEvent("message", { data: this._data(payload) }));
    } else if (kind === "h") {
      this._advance(fields[0], Number(fields[1]));
      this.socketId = fields[2];
    } else if (kind === "r") {
      this.position = { epoch: fields[0], offset: Number(fields[1]) };
      this.socketId = fields[2];
      this._emit(new CustomEvent("resync", { detail: { ...this.position } }));
    }
    // Other kinds are from a later version of the protocol: ignored.
  }

  _advance(epoch, offset) {
    const position = this.position;
    if (position && position.epoch === epoch) position.offset = Math.max(position.offset, offset);
    else this.position = { epoch, offset };
  }

  _parse(data) {
    if (typeof data === "string") {
      const end = data.indexOf("\n");
      if (end < 0) return null;
      const [kind, ...fields] = data.slice(0, end).split(" ");
      return { kind, fields, payload: data.slice(end + 1) };
    }
    const bytes = new Uint8Array(data);
    const end = bytes.indexOf(10);
    if (end < 0) return null;
    const header = new TextDecoder().decode(bytes.subarray(0, end));
    const [kind, ...fields] = header.split(" ");
    return { kind, fields, payload: data.slice(end + 1) };
  }

  _data(payload) {
    if (typeof payload === "string" || this.binaryType === "arraybuffer") return payload;
    return new Blob([payload]);
  }

  _isAnswer(payload) {
    const beat = this.options.heartbeat;
    if (!beat || this._timers.answer === null || payload !== beat.response) return false;
    clearTimeout(this._timers.answer);
    this._timers.answer = null;
    return true;
  }

  _startHeartbeat(ws) {
    const beat = this.options.heartbeat;
    if (!beat) return;
    clearInterval(this._timers.beat);
    this._timers.beat = setInterval(() => {
      if (ws.readyState !== 1 || this._timers.answer !== null) return;
      ws.send(beat.request);
      this._timers.answer = setTimeout(() => {
        // No answer: the connection is dead even if the browser has not noticed.
        this._timers.answer = null;
        ws.close(4001, "heartbeat timeout");
        this._lost(ws, { code: 4001, reason: "heartbeat timeout", wasClean: false });
      }, beat.timeout);
    }, beat.interval);
  }

  _clearTimers() {
    clearTimeout(this._timers.retry);
    clearInterval(this._timers.beat);
    clearTimeout(this._timers.answer);
    clearTimeout(this._timers.connect);
    this._timers = { retry: null, beat: null, answer: null, connect: null };
  }

  _finish(fields) {
    this._readyState = DurableSocket.CLOSED;
    this._emit(makeEvent("close", { ...fields, willReconnect: false }));
  }

  _lost(ws, event, now = false) {
    if (ws !== this._ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    this._ws = null;
    this._clearTimers();
    const fields = { code: event.code, reason: event.reason, wasClean: event.wasClean };
    const again =
      !this._closed &&
      (now || (this._attempt < this.options.maxRetries && this.options.shouldReconnect(fields)));
    if (!again) {
      this._closed = true;
      this._finish(fields);
      return;
    }
    this._readyState = DurableSocket.CONNECTING;
    this._emit(makeEvent("close", { ...fields, willReconnect: true }));
    const { minDelay, maxDelay, factor, jitter } = this.options;
    const base = Math.min(maxDelay, minDelay * Math.pow(factor, this._attempt));
    const delay = now ? 0 : Math.round(base * (1 - jitter * Math.random()));
    this._attempt += 1;
    this._emit(new CustomEvent("reconnect", { detail: { attempt: this._attempt, delay } }));
    this._timers.retry = setTimeout(() => this._connect(), delay);
  }
}

export default DurableSocket;
