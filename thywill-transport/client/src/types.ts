// The vocabulary of the client's API: the types its functions, classes and events take and
// give. The code (JavaScript checked by TypeScript) is typed with them, so its declarations
// are generated and checked against it.

declare global {
  /**
   * The remote procedures an application's server side offers, by dotted function name, each
   * with its argument and result types. Empty here: augment it to type
   * {@link ApplicationInterface.rpc} calls everywhere, or pass your own map as the type
   * parameter of `ApplicationInterface<M>`.
   *
   * ```ts
   * // in a script file (in a module, wrap it in `declare global { ... }`)
   * interface ThywillRpcFunctions {
   *   'powers.square': { args: [number]; result: number };
   * }
   * ```
   */
  // eslint-disable-next-line @typescript-eslint/no-empty-interface
  interface ThywillRpcFunctions {}
}

/**
 * The connection state. `connected` means the server's welcome frame arrived; while
 * waiting between reconnection attempts the state is `disconnected`.
 */
export type State = 'connecting' | 'connected' | 'disconnected';

/**
 * Why an RPC call failed. From the server: `np` permission refused, `nf` no such function,
 * `ba` bad arguments, `he` the function returned an error. From the client: `to` no reply
 * within the timeout, `dc` not connected, or the connection dropped while the call was
 * pending.
 */
export type RpcErrorCode = 'np' | 'nf' | 'ba' | 'he' | 'to' | 'dc';

/** Codes of the server's `error` frames (newer servers may send others). */
export type ServerErrorCode = 'bad_frame' | 'unknown_app' | 'unsupported_version' | 'undeliverable';

/** Message metadata: a JSON object (`_` on the wire). */
export interface Metadata {
  [key: string]: unknown;
}

/** How a connection ended or an attempt failed: the WebSocket close code and reason. */
export interface CloseInfo {
  /**
   * The close code (see docs/PROTOCOL.md): 1001 server going away, 1006 no connection, ...
   * After 1008 (policy violation), 4401 (session refused: reloading the page gets a new
   * session) and 4429 (rate limited) the client retries at the maximum delay.
   */
  code: number;
  /** The close reason, possibly empty. */
  reason: string;
}

/** A server `error` frame: a problem that did not close the connection. */
export interface ServerErrorFrame {
  t: 'error';
  /** Stable error code. */
  code: ServerErrorCode | (string & {});
  /** Human-readable explanation. */
  message: string;
  /** The application concerned, when there is one. */
  app?: string | null;
}

/**
 * What the `continuityLost` event says: messages of a stream (sent to a channel or a
 * session) before `next` will never arrive, because the server could not replay them after
 * a reconnect or a gap (its log was trimmed, too old, or lost), or because the client gave
 * up waiting for a replay. The stream continues at `next` in `epoch`; the messages the
 * client already held from before `next` are delivered (after this event).
 */
export interface ContinuityLostInfo {
  /** The stream: `c:<channel>` or `s:<session>`, with `@<member>` for a per-member history. */
  stream: string;
  /** The stream's epoch from now on (`''`: no position; the next message starts it). */
  epoch: string;
  /** The first offset the stream continues from. */
  next: number;
  /**
   * The applications whose messages the stream carried on this page (their interfaces get
   * the event too); empty when not known, and then every interface gets it.
   */
  apps: string[];
}

/** Where the page is in one stream: a snapshot for debugging ({@link ThywillClient.streams}). */
export interface StreamPosition {
  /** The epoch of the stream's log (`''`: no position; the next message starts it). */
  epoch: string;
  /** The offset of the last message delivered (or skipped). */
  off: number;
  /** Messages held back until the gap before them fills. */
  held: number;
}

/** Settings for {@link ThywillClient.configure}. Every field is optional. */
export interface Options {
  /**
   * The WebSocket URL; relative URLs resolve against the page, and `http(s):` becomes
   * `ws(s):`. `null` restores the default: `ws(s)://<page host><base>/ws`, where `<base>` is
   * the path the classic script was served under (`''` for the package: a page built with a
   * bundler names its endpoint, such as `{url: '/echo/ws'}`).
   */
  url?: string | null;
  /** Smallest reconnection delay in milliseconds (default 250; must be > 0). */
  minDelay?: number;
  /** Largest reconnection delay in milliseconds (default 10000; must be >= minDelay). */
  maxDelay?: number;
  /**
   * Whether to connect by itself once the document has been parsed (default true). Setting
   * it to true later connects at once unless `connect()` or `disconnect()` was called.
   */
  autoConnect?: boolean;
}

/** Per-call RPC options. */
export interface RpcOptions {
  /**
   * Milliseconds to wait for the reply before failing with `to`; 0 waits forever.
   * Defaults to the interface's {@link ApplicationInterface.rpcTimeout} (10000).
   */
  timeout?: number;
}

/** The shape of one entry of an RPC map such as {@link ThywillRpcFunctions}. */
export interface RpcSignature {
  /** The arguments, by convention a tuple (positional) or an object (named). */
  args: unknown;
  /** The result. */
  result: unknown;
}

/** The argument type of function `K` in RPC map `M`. */
export type RpcArgs<M, K extends keyof M> = M[K] extends { args: infer A } ? A : unknown;

/** The result type of function `K` in RPC map `M`. */
export type RpcResult<M, K extends keyof M> = M[K] extends { result: infer R } ? R : unknown;

/** The callback of the callback form of RPC, as in the original thywill. */
export type RpcCallback<R = unknown> = (
  /** null on success, else the error code. */
  error: RpcErrorCode | null,
  /** The result on success, else undefined. */
  result: R | undefined,
  /** On failure, the error with its message. */
  detail?: import('./message.js').RpcError,
) => void;

/** The first argument of the callback form of RPC. */
export interface RpcCall<M, K extends string> {
  /** Dotted function name, such as `powers.square`. */
  name: K;
  /** The arguments (default `[]`). */
  args?: K extends keyof M ? RpcArgs<M, K> : unknown;
  /** Milliseconds to wait for the reply; see {@link RpcOptions.timeout}. */
  timeout?: number;
}

/** Any listener. */
export type Listener = (...args: any[]) => void;

/** The parameters of a listener type. */
export type ListenerArgs<F> = F extends (...args: infer A) => unknown ? A : unknown[];

/** `unknown` for event names not in map `E`, `never` for those in it (so that the typed overload is used). */
export type NotIn<N, E> = N extends keyof E ? never : unknown;

/** What {@link ThywillClient.load} loads: a script, a stylesheet or a client template. */
export type LoadKind = 'script' | 'stylesheet' | 'template';

/** Events of the client ({@link ThywillClient}, the `Thywill` object). */
export interface ThywillEvents {
  /** A connection attempt started. */
  connecting: () => void;
  /** The server's welcome frame arrived; buffered messages have just been sent. */
  connected: () => void;
  /** An established connection ended, or `disconnect()` was called. */
  disconnected: (info: CloseInfo) => void;
  /** A connection attempt ended before the welcome frame. */
  connectionFailure: (info: CloseInfo) => void;
  /** An application message arrived (RPC replies never come here). */
  received: (applicationId: string, message: import('./message.js').Message) => void;
  /** The state changed; fires before the event of the new state. */
  stateChange: (state: State) => void;
  /** The server reported an error that did not close the connection. */
  serverError: (frame: ServerErrorFrame) => void;
  /** A resource loaded on demand (by the page or because the server said so) is in place. */
  loaded: (kind: LoadKind, path: string, element: HTMLElement) => void;
  /**
   * Messages of a stream were lost for good (see {@link ContinuityLostInfo}); fires before
   * the messages that follow the loss are delivered.
   */
  continuityLost: (info: ContinuityLostInfo) => void;
}

/** Events of an {@link ApplicationInterface}; each has an overridable hook of the same name. */
export interface ApplicationEvents {
  /** A message for this application arrived. */
  received: (message: import('./message.js').Message) => void;
  /** The connection is up (also replayed to an interface created while connected). */
  connected: () => void;
  /** A connection attempt started (also replayed to an interface created meanwhile). */
  connecting: () => void;
  /** An established connection ended, or `disconnect()` was called. */
  disconnected: (info: CloseInfo) => void;
  /** A connection attempt ended before the welcome frame. */
  connectionFailure: (info: CloseInfo) => void;
  /** The server reported an error about this application. */
  serverError: (frame: ServerErrorFrame) => void;
  /**
   * Messages of a stream that carried this application's messages (or of a stream not
   * known to the page) were lost for good.
   */
  continuityLost: (info: ContinuityLostInfo) => void;
}
