// Type declarations for thywill.js, the browser client of thywill-rs (wire protocol v1).
//
// thywill.js is a classic script served at `<base>/thywill/thywill.js`; it defines one
// global, `Thywill`. Reference this file from a script with
// `/// <reference path="thywill.d.ts" />` (it is served at `<base>/thywill/thywill.d.ts`), or
// list it in the `files` of a tsconfig.json.

/**
 * The remote procedures an application's server side offers, by dotted function name, each
 * with its argument and result types. Empty here: augment it to type
 * {@link Thywill.ApplicationInterface.rpc} calls everywhere, or pass your own map as the type
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

/**
 * The browser client: one WebSocket per page, shared by every
 * {@link Thywill.ApplicationInterface}, reconnecting forever with jittered exponential
 * backoff, and an event emitter of the {@link Thywill.ThywillEvents}.
 *
 * By default it connects once the document has been parsed, so page scripts may call
 * {@link Thywill.configure} first (or the script tag may carry `data-auto-connect="false"`
 * and `data-url="..."`).
 *
 * Recovery after a reconnect (docs/PROTOCOL.md): sent messages are kept until acknowledged
 * and resent after a reconnect (the server processes each once, by {@link Thywill.tab} and
 * message id); messages to a channel or a session are delivered in order and once, missed
 * ones replayed, and a loss the server cannot repair is reported by the `continuityLost`
 * event.
 */
declare namespace Thywill {
  // ---------------------------------------------------------------------------------------
  // Vocabulary
  // ---------------------------------------------------------------------------------------

  /**
   * The connection state. `connected` means the server's welcome frame arrived; while
   * waiting between reconnection attempts the state is `disconnected`.
   */
  type State = 'connecting' | 'connected' | 'disconnected';

  /**
   * Why an RPC call failed. From the server: `np` permission refused, `nf` no such function,
   * `ba` bad arguments, `he` the function returned an error. From the client: `to` no reply
   * within the timeout, `dc` not connected, or the connection dropped while the call was
   * pending.
   */
  type RpcErrorCode = 'np' | 'nf' | 'ba' | 'he' | 'to' | 'dc';

  /** Codes of the server's `error` frames (newer servers may send others). */
  type ServerErrorCode = 'bad_frame' | 'unknown_app' | 'unsupported_version' | 'undeliverable';

  /** Message metadata: a JSON object (`_` on the wire). */
  interface Metadata {
    [key: string]: unknown;
  }

  /** How a connection ended or an attempt failed: the WebSocket close code and reason. */
  interface CloseInfo {
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
  interface ServerErrorFrame {
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
  interface ContinuityLostInfo {
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

  /** Where the page is in one stream: a snapshot for debugging ({@link streams}). */
  interface StreamPosition {
    /** The epoch of the stream's log (`''`: no position; the next message starts it). */
    epoch: string;
    /** The offset of the last message delivered (or skipped). */
    off: number;
    /** Messages held back until the gap before them fills. */
    held: number;
  }

  /** Settings for {@link configure}. Every field is optional. */
  interface Options {
    /**
     * The WebSocket URL; relative URLs resolve against the page, and `http(s):` becomes
     * `ws(s):`. `null` restores the default: `ws(s)://<page host><base>/ws`, where `<base>` is
     * the path this script was served under.
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
  interface RpcOptions {
    /**
     * Milliseconds to wait for the reply before failing with `to`; 0 waits forever.
     * Defaults to the interface's {@link ApplicationInterface.rpcTimeout} (10000).
     */
    timeout?: number;
  }

  /** The shape of one entry of an RPC map such as {@link ThywillRpcFunctions}. */
  interface RpcSignature {
    /** The arguments, by convention a tuple (positional) or an object (named). */
    args: unknown;
    /** The result. */
    result: unknown;
  }

  /** The argument type of function `K` in RPC map `M`. */
  type RpcArgs<M, K extends keyof M> = M[K] extends { args: infer A } ? A : unknown;

  /** The result type of function `K` in RPC map `M`. */
  type RpcResult<M, K extends keyof M> = M[K] extends { result: infer R } ? R : unknown;

  /** The callback of the callback form of RPC, as in the original thywill. */
  type RpcCallback<R = unknown> = (
    /** null on success, else the error code. */
    error: RpcErrorCode | null,
    /** The result on success, else undefined. */
    result: R | undefined,
    /** On failure, the error with its message. */
    detail?: RpcError,
  ) => void;

  /** The first argument of the callback form of RPC. */
  interface RpcCall<M, K extends string> {
    /** Dotted function name, such as `powers.square`. */
    name: K;
    /** The arguments (default `[]`). */
    args?: K extends keyof M ? RpcArgs<M, K> : unknown;
    /** Milliseconds to wait for the reply; see {@link RpcOptions.timeout}. */
    timeout?: number;
  }

  /** Any listener. */
  type Listener = (...args: any[]) => void;

  /** The parameters of a listener type. */
  type ListenerArgs<F> = F extends (...args: infer A) => unknown ? A : unknown[];

  /** `unknown` for event names not in map `E`, `never` for those in it (so that the typed overload is used). */
  type NotIn<N, E> = N extends keyof E ? never : unknown;

  /** Events of the global {@link Thywill}. */
  interface ThywillEvents {
    /** A connection attempt started. */
    connecting: () => void;
    /** The server's welcome frame arrived; buffered messages have just been sent. */
    connected: () => void;
    /** An established connection ended, or `disconnect()` was called. */
    disconnected: (info: CloseInfo) => void;
    /** A connection attempt ended before the welcome frame. */
    connectionFailure: (info: CloseInfo) => void;
    /** An application message arrived (RPC replies never come here). */
    received: (applicationId: string, message: Message) => void;
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

  /** What {@link load} loads: a script, a stylesheet or a client template. */
  type LoadKind = 'script' | 'stylesheet' | 'template';

  /** Events of an {@link ApplicationInterface}; each has an overridable hook of the same name. */
  interface ApplicationEvents {
    /** A message for this application arrived. */
    received: (message: Message) => void;
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

  // ---------------------------------------------------------------------------------------
  // Classes
  // ---------------------------------------------------------------------------------------

  /**
   * A minimal event emitter. Listener exceptions are caught and logged with
   * `console.error`; they never break the library or the other listeners.
   *
   * `E` maps known event names to listener types; other names are accepted untyped, for
   * subclasses' own events.
   */
  class Emitter<E = {}> {
    /** Adds a listener. */
    on<K extends keyof E & string>(event: K, fn: E[K]): this;
    on<N extends string>(event: N & NotIn<N, E>, fn: Listener): this;
    /** Adds a listener that is removed after its first call. */
    once<K extends keyof E & string>(event: K, fn: E[K]): this;
    once<N extends string>(event: N & NotIn<N, E>, fn: Listener): this;
    /**
     * Removes `fn` from `event` (its most recent registration), every listener of `event`
     * without `fn`, or every listener without arguments.
     */
    off<K extends keyof E & string>(event: K, fn?: E[K]): this;
    off(event?: string, fn?: Listener): this;
    /** Calls the listeners of `event` in order; true when there were any. */
    emit<K extends keyof E & string>(event: K, ...args: ListenerArgs<E[K]>): boolean;
    emit<N extends string>(event: N & NotIn<N, E>, ...args: unknown[]): boolean;
    /** Number of listeners of `event`. */
    listenerCount(event: string): number;
  }

  /**
   * An application message: a JSON payload and its metadata, with the original thywill's
   * helpers. Setters return the message, so they chain.
   */
  class Message<T = unknown> {
    /** `data` of `undefined` becomes `null`; `meta` that is not an object becomes `{}`. */
    constructor(data?: T, meta?: Metadata);
    /** The payload (any JSON value). */
    data: T;
    /** The metadata object (`_` on the wire). */
    _: Metadata;
    /** The payload. */
    getData(): T;
    /** Replaces the payload (`undefined` becomes `null`). */
    setData<U>(data: U): Message<U>;
    /** The whole metadata object. */
    getMetadata(): Metadata;
    /** One metadata value. */
    getMetadata(key: string): unknown;
    /** Sets one metadata value; `undefined` removes the key. */
    setMetadata(key: string, value: unknown): this;
    /** Replaces the whole metadata with a copy of `metadata`. */
    setMetadata(metadata: Metadata): this;
    /** Removes one metadata value, or all of them without a key. */
    clearMetadata(key?: string): this;
    /** The `type` metadata value, if any. */
    getType(): string | undefined;
    /** Sets the `type` metadata value; `undefined` or `null` removes it. */
    setType(type: string | null | undefined): this;
    /** A plain object `{data, _}` (the metadata object copied). */
    toObject(): { data: T; _: Metadata };
    /** `{data, _}`, for `JSON.stringify`. */
    toJSON(): { data: T; _: Metadata };
    /** The message as JSON text. */
    toString(): string;
  }

  /** The rejection of a failed RPC call. */
  class RpcError extends Error {
    constructor(code: RpcErrorCode, message?: string, functionName?: string);
    /** Why it failed. */
    readonly code: RpcErrorCode;
    /** The function called, when known. */
    readonly functionName: string | null;
  }

  /**
   * One application's view of the shared connection, by application id. Several interfaces
   * (for the same or different applications) share the page's one socket.
   *
   * Subclass it and override the hooks, or listen to the {@link ApplicationEvents}; each
   * event calls the hook first, then the listeners.
   *
   * `M` types {@link rpc} calls by function name (default: the global
   * {@link ThywillRpcFunctions}).
   *
   * ```ts
   * interface CalcRpc { 'powers.square': { args: [number]; result: number } }
   * const calc = new Thywill.ApplicationInterface<CalcRpc>('calculations');
   * const nine: number = await calc.rpc('powers.square', [3]);
   * ```
   */
  class ApplicationInterface<M = ThywillRpcFunctions> extends Emitter<ApplicationEvents> {
    /** Subscribes to the connection's events. Throws a TypeError for an empty id. */
    constructor(applicationId: string);

    /** The application this interface talks to. */
    applicationId: string;

    /**
     * Default RPC timeout in milliseconds (10000; 0 waits forever): a plain field, as in the
     * original; {@link setRpcTimeout} sets it after validating the value.
     */
    rpcTimeout: number;

    /**
     * Sends data (any JSON value) or a {@link Message} to the application on the server.
     * The message is kept until the server acknowledges it and resent after a reconnect; the
     * server processes it once. While disconnected it is buffered and sent after the next
     * welcome (at most 1000 messages are kept in all; beyond that the oldest are dropped).
     * Returns the message's client id.
     */
    send(data: unknown): number;

    /**
     * Calls a remote procedure listed in `M`: typed arguments and result.
     * The Promise rejects with an {@link RpcError}; calls are never buffered, so while
     * disconnected it rejects at once with `dc`, and pending calls reject with `dc` when the
     * connection drops.
     */
    rpc<K extends keyof M & string>(name: K, args: RpcArgs<M, K>, options?: RpcOptions): Promise<RpcResult<M, K>>;
    /** Calls a remote procedure not listed in `M`; `R` is the expected result type. */
    rpc<R = unknown, N extends string = string>(
      name: N & NotIn<N, M>,
      args?: unknown,
      options?: RpcOptions,
    ): Promise<R>;
    /**
     * The original thywill's callback form: `callback(errorCodeOrNull, result)`, called
     * asynchronously. Without a callback the call is fire-and-forget.
     */
    rpc<K extends string>(
      call: RpcCall<M, K>,
      callback?: RpcCallback<K extends keyof M ? RpcResult<M, K> : unknown>,
    ): void;

    /** Sets the default RPC timeout in milliseconds (0 waits forever). */
    setRpcTimeout(ms: number): this;

    /**
     * Stops listening to the connection (other interfaces and the socket are unaffected);
     * later RPC calls reject with `dc`.
     */
    destroy(): void;

    /** Hook: a message for this application arrived. */
    received(message: Message): void;
    /** Hook: the connection is up. */
    connected(): void;
    /** Hook: a connection attempt started. */
    connecting(): void;
    /** Hook: an established connection ended. */
    disconnected(info: CloseInfo): void;
    /** Hook: a connection attempt failed before the welcome frame. */
    connectionFailure(info: CloseInfo): void;
    /** Hook: the server reported an error about this application (a message it refused). */
    serverError(frame: ServerErrorFrame): void;
    /** Hook: messages of a stream this application received messages of were lost for good. */
    continuityLost(info: ContinuityLostInfo): void;
  }

  // ---------------------------------------------------------------------------------------
  // The global's members
  // ---------------------------------------------------------------------------------------

  /** The protocol version this client speaks. */
  const protocolVersion: 1;

  /** The current connection state. */
  const state: State;

  /** Whether the state is `connected` (the welcome frame arrived and the socket is up). */
  const isConnected: boolean;

  /** This connection's id, from the welcome frame; null while not connected. */
  const connectionId: string | null;

  /** The session the connection is bound to; null while not connected. */
  const sessionId: string | null;

  /** The cluster member holding the connection; null while not connected. */
  const member: string | null;

  /** The applications the server serves on this endpoint; empty while not connected. */
  const applications: string[];

  /**
   * Messages waiting to be sent: while disconnected, those sent meanwhile and those not
   * acknowledged on the previous connection (all are sent after the next welcome).
   */
  const buffered: number;

  /** Messages sent on the current connection that the server has not acknowledged yet. */
  const unacknowledged: number;

  /**
   * This page load's tab id (16 hex digits): sent in every `hello`, kept across reconnects,
   * so that the server processes each message id of the page once.
   */
  const tab: string;

  /**
   * A snapshot of the page's position in every stream it has seen, by stream name, for
   * debugging (the client keeps at most 256, the least recently active are forgotten).
   */
  const streams: { [stream: string]: StreamPosition };

  /** The WebSocket URL the next connection attempt uses. */
  const url: string;

  /** The base path this script was served under, such as `/echo` (`''` at the root). */
  const basePath: string;

  /** Changes settings (effective at the next connection attempt). Throws on invalid values. */
  function configure(options: Options): typeof Thywill;

  /** Connects now (even if a retry was waiting) and keeps reconnecting. */
  function connect(): typeof Thywill;

  /** Closes the connection and stops reconnecting until {@link connect}. */
  function disconnect(): typeof Thywill;

  /**
   * Sends data (any JSON value) or a {@link Message} to an application; kept until the server
   * acknowledges it (resent after a reconnect, processed once) and buffered while
   * disconnected. Returns the message's client id (increasing per page).
   */
  function send(applicationId: string, data: unknown): number;

  /** Calls a remote procedure of an application (see {@link ApplicationInterface.rpc}). */
  function rpc<R = unknown>(applicationId: string, name: string, args?: unknown, options?: RpcOptions): Promise<R>;

  /**
   * Loads a resource outside the page's bootstrap set, at most once per path (progressive
   * exposure); the server can ask for the same with a `load` frame. `path` must be a plain
   * absolute path of the page's origin (`/app/js/x.js`: one leading `/`, no backslash, no
   * whitespace or control character); anything else (`//host/x.js`, `/\host/x.js`, a full
   * URL, `javascript:`) is refused with a console warning and a rejected promise, and a
   * `load` frame with such a path is ignored. Rejects when it cannot be loaded (a later call
   * tries again).
   */
  function load(kind: LoadKind, path: string): Promise<HTMLElement>;
  /** Loads and runs a script once; resolves when it has run. */
  function loadScript(path: string): Promise<HTMLScriptElement>;
  /** Loads a stylesheet once; resolves when it applies. */
  function loadStylesheet(path: string): Promise<HTMLLinkElement>;
  /**
   * Loads a client template once and inlines it as `<script type="text/template" id>`: the id
   * is `id`, else the server's `X-Thywill-Template-Id` header, else the file name without its
   * extension. Rejects, leaving the page alone, when an element of that id exists and is not
   * such a template.
   */
  function loadTemplate(path: string, id?: string): Promise<HTMLScriptElement>;

  /** Adds a listener of the connection's events. */
  function on<K extends keyof ThywillEvents>(event: K, fn: ThywillEvents[K]): typeof Thywill;
  function on<N extends string>(event: N & NotIn<N, ThywillEvents>, fn: Listener): typeof Thywill;
  /** Adds a listener that is removed after its first call. */
  function once<K extends keyof ThywillEvents>(event: K, fn: ThywillEvents[K]): typeof Thywill;
  function once<N extends string>(event: N & NotIn<N, ThywillEvents>, fn: Listener): typeof Thywill;
  /** Removes a listener (see {@link Emitter.off}). */
  function off<K extends keyof ThywillEvents>(event: K, fn?: ThywillEvents[K]): typeof Thywill;
  function off(event?: string, fn?: Listener): typeof Thywill;
  /** Calls the listeners of an event. */
  function emit<K extends keyof ThywillEvents>(event: K, ...args: ListenerArgs<ThywillEvents[K]>): boolean;
  function emit<N extends string>(event: N & NotIn<N, ThywillEvents>, ...args: unknown[]): boolean;
  /** Number of listeners of an event. */
  function listenerCount(event: string): number;
}
