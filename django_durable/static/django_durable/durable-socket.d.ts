// Types of durable-socket.js (django-durable). The protocol: docs/reconnecting.md.

export interface HeartbeatOptions {
  /** The object's auto-response request (WebSocketRequestResponsePair.request). */
  request: string;
  /** Its response; a frame equal to it answers the pending heartbeat. */
  response: string;
  /** Milliseconds between heartbeats (default 20000). */
  interval?: number;
  /** Milliseconds to wait for the answer before the connection counts as dead (10000). */
  timeout?: number;
}

export interface CloseInfo {
  code: number;
  reason: string;
  wasClean: boolean;
}

export interface DurableSocketOptions {
  /** Subprotocols offered at every connection. */
  protocols?: string | string[];
  /** Ask the server to frame broadcasts and replay missed ones (class `history = N`). */
  resume?: boolean;
  /** Heartbeat through the object's auto-response pair; null (default): none. */
  heartbeat?: HeartbeatOptions | null;
  /** First reconnection delay in ms (default 500). */
  minDelay?: number;
  /** Largest reconnection delay in ms (default 30000). */
  maxDelay?: number;
  /** Growth of the delay per failed attempt (default 2). */
  factor?: number;
  /** Fraction of the delay taken off at random, 0..1 (default 0.5). */
  jitter?: number;
  /** Messages kept while disconnected; send() throws beyond (default 100). */
  maxQueue?: number;
  /** Reconnection attempts in a row before giving up (default Infinity). */
  maxRetries?: number;
  /** Milliseconds a connection may take to open (default 10000). */
  connectTimeout?: number;
  /** Whether to reconnect after a close (default: unless the code is 1000). */
  shouldReconnect?: (event: CloseInfo) => boolean;
  /** A WebSocket implementation (default: globalThis.WebSocket). */
  WebSocket?: typeof WebSocket;
}

export interface Position {
  epoch: string;
  offset: number;
}

export interface OpenEvent extends Event {
  /** True for every connection after the first. */
  readonly reconnected: boolean;
}

export interface DurableCloseEvent extends Event, CloseInfo {
  /** False after close(), when shouldReconnect says no, or after maxRetries. */
  readonly willReconnect: boolean;
}

export type ReconnectEvent = CustomEvent<{ attempt: number; delay: number }>;
/** What was missed is gone (history too short, or lost): reload the page's state. */
export type ResyncEvent = CustomEvent<Position>;

export interface DurableSocketEventMap {
  open: OpenEvent;
  /** `lastEventId` is "<epoch>:<offset>" for a broadcast kept in the object's history. */
  message: MessageEvent;
  close: DurableCloseEvent;
  reconnect: ReconnectEvent;
  resync: ResyncEvent;
  error: Event;
}

export declare class DurableSocket extends EventTarget {
  static readonly CONNECTING: 0;
  static readonly OPEN: 1;
  static readonly CLOSING: 2;
  static readonly CLOSED: 3;

  constructor(url: string | URL, options?: DurableSocketOptions);

  readonly url: string;
  readonly readyState: 0 | 1 | 2 | 3;
  readonly protocol: string;
  readonly bufferedAmount: number;
  /** Messages waiting for a connection. */
  readonly queued: number;
  binaryType: "blob" | "arraybuffer";
  /** Where the client is in the object's history (resume only). */
  position: Position | null;
  /** The server's id of the current or last socket (resume only). */
  socketId: string | null;

  onopen: ((this: DurableSocket, event: OpenEvent) => void) | null;
  onmessage: ((this: DurableSocket, event: MessageEvent) => void) | null;
  onclose: ((this: DurableSocket, event: DurableCloseEvent) => void) | null;
  onerror: ((this: DurableSocket, event: Event) => void) | null;
  onreconnect: ((this: DurableSocket, event: ReconnectEvent) => void) | null;
  onresync: ((this: DurableSocket, event: ResyncEvent) => void) | null;

  /** Send now, or queue while disconnected; throws RangeError when the queue is full. */
  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void;
  /** Close for good (no reconnection); queued messages are dropped. */
  close(code?: number, reason?: string): void;
  /** Drop the connection and connect again at once, resuming where it was. */
  reconnect(): void;

  addEventListener<K extends keyof DurableSocketEventMap>(
    type: K,
    listener: (this: DurableSocket, event: DurableSocketEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof DurableSocketEventMap>(
    type: K,
    listener: (this: DurableSocket, event: DurableSocketEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | EventListenerOptions,
  ): void;
}

export default DurableSocket;
