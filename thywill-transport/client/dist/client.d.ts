/**
 * The browser client, `Thywill`: one WebSocket per page, shared by every
 * {@link ApplicationInterface}, reconnecting forever with jittered exponential backoff, and
 * an event emitter of the {@link ThywillEvents}.
 *
 * By default it connects once the document has been parsed, so page scripts may call
 * {@link ThywillClient.configure} first (or the classic script's tag may carry
 * `data-auto-connect="false"` and `data-url="..."`).
 *
 * Recovery after a reconnect (docs/PROTOCOL.md): sent messages are kept until acknowledged
 * and resent after a reconnect (the server processes each once, by {@link ThywillClient.tab}
 * and message id); messages to a channel or a session are delivered in order and once, missed
 * ones replayed, and a loss the server cannot repair is reported by the `continuityLost`
 * event.
 *
 * There is one per page: use `Thywill`, never construct another.
 *
 * @extends {Emitter<ThywillEvents>}
 */
export class ThywillClient extends Emitter<ThywillEvents> {
    constructor();
    /**
     * Changes settings (effective at the next connection attempt). Throws on invalid values.
     * @param {Options} options
     * @returns {this}
     */
    configure(options: Options): this;
    /**
     * Connects now (even if a retry was waiting) and keeps reconnecting.
     * @returns {this}
     */
    connect(): this;
    /**
     * Closes the connection and stops reconnecting until {@link ThywillClient.connect}.
     * @returns {this}
     */
    disconnect(): this;
    /**
     * Sends data (any JSON value) or a {@link Message} to an application; kept until the server
     * acknowledges it (resent after a reconnect, processed once) and buffered while
     * disconnected (at most 1000 messages are kept in all; beyond that the oldest are dropped).
     * Returns the message's client id (increasing per page).
     * @param {string} applicationId
     * @param {unknown} data
     * @returns {number}
     */
    send(applicationId: string, data: unknown): number;
    /**
     * Calls a remote procedure of an application (see {@link ApplicationInterface.rpc}).
     * @template [R=unknown]
     * @param {string} applicationId
     * @param {string} name
     * @param {unknown} [args]
     * @param {RpcOptions} [options]
     * @returns {Promise<R>}
     */
    rpc<R = unknown>(applicationId: string, name: string, args?: unknown, options?: RpcOptions): Promise<R>;
    /**
     * Loads a resource outside the page's bootstrap set, at most once per path (progressive
     * exposure); the server can ask for the same with a `load` frame. `path` must be a plain
     * absolute path of the page's origin (`/app/js/x.js`: one leading `/`, no backslash, no
     * whitespace or control character); anything else (`//host/x.js`, `/\host/x.js`, a full
     * URL, `javascript:`) is refused with a console warning and a rejected promise, and a
     * `load` frame with such a path is ignored. Rejects when it cannot be loaded (a later call
     * tries again).
     * @param {LoadKind} kind
     * @param {string} path
     * @returns {Promise<HTMLElement>}
     */
    load(kind: LoadKind, path: string): Promise<HTMLElement>;
    /**
     * Loads and runs a script once; resolves with its element when it has run.
     * @param {string} path
     * @returns {Promise<HTMLScriptElement>}
     */
    loadScript(path: string): Promise<HTMLScriptElement>;
    /**
     * Loads a stylesheet once; resolves with its `<link>` when it applies.
     * @param {string} path
     * @returns {Promise<HTMLLinkElement>}
     */
    loadStylesheet(path: string): Promise<HTMLLinkElement>;
    /**
     * Loads a client template once and inlines it as `<script type="text/template" id>`: the id
     * is `id`, else the server's `X-Thywill-Template-Id` header, else the file name without its
     * extension. Rejects, leaving the page alone, when an element of that id exists and is not
     * such a template.
     * @param {string} path
     * @param {string} [id]
     * @returns {Promise<HTMLScriptElement>}
     */
    loadTemplate(path: string, id?: string): Promise<HTMLScriptElement>;
    /**
     * The current connection state.
     * @returns {State}
     */
    get state(): State;
    /**
     * Whether the state is `connected` (the welcome frame arrived and the socket is up).
     * @returns {boolean}
     */
    get isConnected(): boolean;
    /**
     * This connection's id, from the welcome frame; null while not connected.
     * @returns {string | null}
     */
    get connectionId(): string | null;
    /**
     * The session the connection is bound to; null while not connected.
     * @returns {string | null}
     */
    get sessionId(): string | null;
    /**
     * The cluster member holding the connection; null while not connected.
     * @returns {string | null}
     */
    get member(): string | null;
    /**
     * The applications the server serves on this endpoint; empty while not connected.
     * @returns {string[]}
     */
    get applications(): string[];
    /**
     * Messages waiting to be sent: while disconnected, those sent meanwhile and those not
     * acknowledged on the previous connection (all are sent after the next welcome).
     * @returns {number}
     */
    get buffered(): number;
    /**
     * Messages sent on the current connection that the server has not acknowledged yet.
     * @returns {number}
     */
    get unacknowledged(): number;
    /**
     * This page load's tab id (16 hex digits): sent in every `hello`, kept across reconnects,
     * so that the server processes each message id of the page once.
     * @returns {string}
     */
    get tab(): string;
    /**
     * A snapshot of the page's position in every stream it has seen, by stream name, for
     * debugging (the client keeps at most 256, the least recently active are forgotten).
     * @returns {{ [stream: string]: StreamPosition }}
     */
    get streams(): {
        [stream: string]: StreamPosition;
    };
    /**
     * The WebSocket URL the next connection attempt uses.
     * @returns {string}
     */
    get url(): string;
    /**
     * The base path the classic script was served under, such as `/echo` (`''` at the root,
     * and in the package).
     * @returns {string}
     */
    get basePath(): string;
}
/**
 * The client of this page (the classic script's global `Thywill`), with the classes as
 * properties, as the global has them.
 * @type {ThywillClient & {
 *   readonly Emitter: typeof Emitter,
 *   readonly Message: typeof Message,
 *   readonly RpcError: typeof RpcError,
 *   readonly ApplicationInterface: typeof ApplicationInterface,
 *   readonly protocolVersion: 1,
 * }}
 */
export const Thywill: ThywillClient & {
    readonly Emitter: typeof Emitter;
    readonly Message: typeof Message;
    readonly RpcError: typeof RpcError;
    readonly ApplicationInterface: typeof ApplicationInterface;
    readonly protocolVersion: 1;
};
/**
 * One application's view of the shared connection, by application id. Several interfaces
 * (for the same or different applications) share the page's one socket.
 *
 * Subclass it and override the hooks (received, connected, connecting, disconnected,
 * connectionFailure, serverError, continuityLost), or listen to the
 * {@link ApplicationEvents}; each event calls the hook first, then the listeners.
 *
 * `M` types {@link ApplicationInterface.rpc} calls by function name (default: the global
 * {@link ThywillRpcFunctions}).
 *
 * ```ts
 * interface CalcRpc { 'powers.square': { args: [number]; result: number } }
 * const calc = new Thywill.ApplicationInterface<CalcRpc>('calculations');
 * const nine: number = await calc.rpc('powers.square', [3]);
 * ```
 *
 * @template [M=ThywillRpcFunctions]
 * @extends {Emitter<ApplicationEvents>}
 */
export class ApplicationInterface<M = ThywillRpcFunctions> extends Emitter<ApplicationEvents> {
    /**
     * Subscribes to the connection's events. Throws a TypeError for an empty id.
     * @param {string} applicationId
     */
    constructor(applicationId: string);
    /**
     * The application this interface talks to.
     * @type {string}
     */
    applicationId: string;
    /**
     * Default RPC timeout in milliseconds (10000; 0 waits forever): a plain field, as in the
     * original; {@link ApplicationInterface.setRpcTimeout} sets it after validating the value.
     * @type {number}
     */
    rpcTimeout: number;
    /**
     * Sends data (any JSON value) or a {@link Message} to the application on the server.
     * The message is kept until the server acknowledges it and resent after a reconnect; the
     * server processes it once. While disconnected it is buffered and sent after the next
     * welcome (at most 1000 messages are kept in all; beyond that the oldest are dropped).
     * Returns the message's client id.
     * @param {unknown} data
     * @returns {number}
     */
    send(data: unknown): number;
    /**
     * Calls a remote procedure listed in `M`: typed arguments and result.
     * The Promise rejects with an {@link RpcError}; calls are never buffered, so while
     * disconnected it rejects at once with `dc`, and pending calls reject with `dc` when the
     * connection drops.
     * @template {keyof M & string} K
     * @overload
     * @param {K} name
     * @param {RpcArgs<M, K>} args
     * @param {RpcOptions} [options]
     * @returns {Promise<RpcResult<M, K>>}
     */
    rpc<K extends keyof M & string>(name: K, args: RpcArgs<M, K>, options?: RpcOptions | undefined): Promise<RpcResult<M, K>>;
    /**
     * Calls a remote procedure not listed in `M`; `R` is the expected result type.
     * @template [R=unknown]
     * @template {string} [N=string]
     * @overload
     * @param {N & NotIn<N, M>} name
     * @param {unknown} [args]
     * @param {RpcOptions} [options]
     * @returns {Promise<R>}
     */
    rpc<R = unknown, N extends string = string>(name: N & NotIn<N, M>, args?: unknown, options?: RpcOptions | undefined): Promise<R>;
    /**
     * The original thywill's callback form: `callback(errorCodeOrNull, result, error)`, called
     * asynchronously. Without a callback the call is fire-and-forget.
     * @template {string} C
     * @overload
     * @param {RpcCall<M, C>} call
     * @param {RpcCallback<C extends keyof M ? RpcResult<M, C> : unknown>} [callback]
     * @returns {void}
     */
    rpc<C extends string>(call: RpcCall<M, C>, callback?: RpcCallback<C extends keyof M ? RpcResult<M, C> : unknown> | undefined): void;
    /**
     * Sets the default RPC timeout in milliseconds (0 waits forever).
     * @param {number} ms
     * @returns {this}
     */
    setRpcTimeout(ms: number): this;
    /**
     * Stops listening to the connection (other interfaces and the socket are unaffected);
     * later RPC calls reject with `dc`.
     */
    destroy(): void;
    /**
     * Hook: a message for this application arrived.
     * @param {Message} message
     * @returns {void}
     */
    received(message: Message): void;
    /**
     * Hook: the connection is up.
     * @returns {void}
     */
    connected(): void;
    /**
     * Hook: a connection attempt started.
     * @returns {void}
     */
    connecting(): void;
    /**
     * Hook: an established connection ended.
     * @param {CloseInfo} info
     * @returns {void}
     */
    disconnected(info: CloseInfo): void;
    /**
     * Hook: a connection attempt failed before the welcome frame.
     * @param {CloseInfo} info
     * @returns {void}
     */
    connectionFailure(info: CloseInfo): void;
    /**
     * Hook: the server reported an error about this application (a message it refused).
     * @param {ServerErrorFrame} frame
     * @returns {void}
     */
    serverError(frame: ServerErrorFrame): void;
    /**
     * Hook: messages of a stream this application received messages of were lost for good.
     * @param {ContinuityLostInfo} info
     * @returns {void}
     */
    continuityLost(info: ContinuityLostInfo): void;
}
import type { ThywillEvents } from './types.js';
import { Emitter } from './emitter.js';
import type { Options } from './types.js';
import type { RpcOptions } from './types.js';
import type { LoadKind } from './types.js';
import type { State } from './types.js';
import type { StreamPosition } from './types.js';
import { Message } from './message.js';
import { RpcError } from './message.js';
import type { ApplicationEvents } from './types.js';
import type { RpcArgs } from './types.js';
import type { RpcResult } from './types.js';
import type { NotIn } from './types.js';
import type { RpcCall } from './types.js';
import type { RpcCallback } from './types.js';
import type { CloseInfo } from './types.js';
import type { ServerErrorFrame } from './types.js';
import type { ContinuityLostInfo } from './types.js';
