// Type declarations of wsroom.js, the JavaScript client of wsroom's
// wsroom.v1 protocol (docs/protocol.md).

/** The subprotocol the client offers: "wsroom.v1". */
export const PROTOCOL: 'wsroom.v1';
/** The handshake's query parameter that carries resume positions. */
export const RESUME_PARAM: 'wsroom_resume';
/** Default for ClientOptions.connectTimeout, in ms (10000). */
export const CONNECT_TIMEOUT: number;
/** Default for ClientOptions.maxQueued (1024). */
export const MAX_QUEUED: number;
/** Defaults of ReconnectOptions: min 250, max 5000, factor 2, jitter 0.5, stable 1000. */
export const RECONNECT_DEFAULTS: Readonly<Required<ReconnectOptions>>;

/** How the client waits between connection attempts. All in milliseconds. */
export interface ReconnectOptions {
  /** The first delay's upper bound. Default 250. */
  min?: number;
  /** No delay is longer. Default 5000. */
  max?: number;
  /** Each failed attempt multiplies the bound by this. Default 2. */
  factor?: number;
  /** A delay is drawn uniformly from [bound × (1 − jitter), bound]: 1 is "full jitter", 0 none. Default 0.5. */
  jitter?: number;
  /** A connection open this long resets the attempts, so the next delay is short again. Default 1000. */
  stable?: number;
}

/** A constructor with the browser WebSocket's shape (the `ws` package's works). */
export interface WebSocketLike {
  new (url: string, protocols?: string | string[]): any;
}

export interface ClientOptions {
  /** The WebSocket implementation. Default globalThis.WebSocket (browsers, Node 22+); on Node 20 pass the `ws` package's. */
  WebSocket?: WebSocketLike;
  /** Reconnection delays, or false to never reconnect. */
  reconnect?: ReconnectOptions | false;
  /** Decides whether a close is retried. Default: the exported shouldReconnect. Never asked after close(). */
  shouldReconnect?: (code: number, reason: string) => boolean;
  /** From creating a socket to the server's hello; then the attempt counts as failed (close 1006 "connect timeout"). Default 10000 ms. */
  connectTimeout?: number;
  /** Messages send/publish/sendTo may queue while not connected; beyond, they throw. Default 1024. */
  maxQueued?: number;
  /** Parse wsroom.Relay's envelopes: messages get `from` and the envelope's data, refusals become 'error' events of kind 'relay'. Default false. */
  relay?: boolean;
  /** Extra query parameters added to every connection's URL. */
  query?: Record<string, string>;
  /** Start connecting (on the next microtask). Default true; with false, call connect(). */
  connect?: boolean;
  /** Randomness of the jitter, in [0, 1). Default Math.random. */
  random?: () => number;
  /** The timers of connect timeouts and reconnection delays. Default the global ones. */
  timers?: { setTimeout(fn: () => void, ms: number): any; clearTimeout(id: any): void };
  /** Called when a listener throws. Default: rethrown asynchronously. */
  onListenerError?: (error: unknown, type: string) => void;
}

/** Where a broadcast stands in its room's history. */
export interface Position {
  /** Changes whenever the history's continuity is lost. */
  epoch: string;
  /** Counts the epoch's broadcasts from 1. */
  offset: number;
}

export interface MessageEvent {
  /** The room the message was sent to; absent for sends to users, to everyone or to this connection. */
  room?: string;
  /** For a broadcast in a room with history. */
  position?: Position;
  /** True if the message was replayed after a reconnect (it came before the room's 'joined'). Set when position is. */
  replayed?: boolean;
  /** The payload: a string for a text message, the bytes for a binary one; with `relay`, the envelope's data (any JSON value). */
  data: any;
  /** True for a binary message. */
  binary: boolean;
  /** With `relay`: the sender's user ID, stamped by the hub. */
  from?: string;
  /** With `relay`: true for a message sent to users (sendTo), false for one sent to a room (publish). */
  direct?: boolean;
}

export interface OpenEvent {
  userId: string;
  connId: string;
  /** False for the client's first connection. */
  reconnected: boolean;
}

export interface JoinedEvent {
  room: string;
  /** The room's position when live delivery starts; absent for a room without history. */
  position?: Position;
  /** The client asked for the room (join()). */
  requested: boolean;
  /** After a resume: how many missed messages were replayed just before. */
  resumed?: number;
  /** The resume was impossible: "epoch", "trimmed", "nohistory", "unavailable" (the broker did not answer), or "notresumed" (joined anew without a resume). */
  lost?: string;
}

export interface RecoveredEvent { room: string; count: number; position?: Position }
export interface LostEvent { room: string; reason: string; position?: Position }
export interface LeftEvent { room: string }

export interface CloseEvent {
  code: number;
  reason: string;
  wasClean: boolean;
  /** A reconnection is scheduled. */
  willReconnect: boolean;
  /** In ms, when willReconnect. */
  delay?: number;
}

export interface ConnectingEvent { attempt: number; url: string }
export interface ReconnectingEvent { attempt: number; delay: number }

export interface ErrorEvent {
  /** "relay" (a refused envelope), "join" or "leave" (a refused request), "request", "protocol" (the server broke the protocol: the client closes), "connect". */
  kind: 'relay' | 'join' | 'leave' | 'request' | 'protocol' | 'connect';
  error: string;
  /** The envelope's or request's id. */
  id?: string;
  room?: string;
}

export interface EventMap {
  connecting: ConnectingEvent;
  open: OpenEvent;
  message: MessageEvent;
  joined: JoinedEvent;
  left: LeftEvent;
  recovered: RecoveredEvent;
  lost: LostEvent;
  close: CloseEvent;
  reconnecting: ReconnectingEvent;
  error: ErrorEvent;
}

export type State = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export class WsroomClient {
  /**
   * @param url the hub's URL (ws:, wss:, http:, https:, or relative to the page);
   *   a list is used in turn, one URL per connection attempt; a function gets the attempt's number.
   */
  constructor(url: string | URL | Array<string | URL> | ((attempt: number) => string | URL), options?: ClientOptions);

  readonly state: State;
  /** From the last hello, or "". */
  readonly userId: string;
  /** The current connection's ID, or "" when not connected. */
  readonly connId: string;

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof EventMap>(type: K, listener: (event: EventMap[K]) => void): () => void;
  off<K extends keyof EventMap>(type: K, listener: (event: EventMap[K]) => void): void;

  /** Starts connecting if constructed with connect: false. */
  connect(): void;
  /** Ends the client for good: no reconnection; pending requests are rejected. */
  close(code?: number, reason?: string): void;

  /** The room's last position, or undefined. */
  position(room: string): Position | undefined;
  /** The rooms the current connection is in. */
  rooms(): string[];

  /** Asks to join room (Options.AuthorizeJoin decides); asked again on every reconnect until leave(). */
  join(room: string): Promise<JoinedEvent>;
  /** Asks to leave room; it is then neither resumed nor asked for again. */
  leave(room: string): Promise<LeftEvent>;

  /** An application message to the hub's OnMessage; queued while not connected. */
  send(data: string | ArrayBuffer | ArrayBufferView): void;
  /** Relays data (any JSON value) to every connection of these users; returns the envelope's id. */
  sendTo(users: string[], data: unknown, options?: { id?: string }): string;
  /** Relays data (any JSON value) to everyone else in room (which the client is in); returns the envelope's id. */
  publish(room: string, data: unknown, options?: { id?: string; to?: string[] }): string;
}

/** The delay before attempt `attempt` (0-based): min × factor^attempt capped at max, less a random fraction of up to jitter. */
export function backoffDelay(attempt: number, options?: ReconnectOptions, random?: () => number): number;

/** The default rule: which close codes are retried (see client/README.md). */
export function shouldReconnect(code: number, reason?: string): boolean;
