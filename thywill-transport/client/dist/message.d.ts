/**
 * An application message: a JSON payload (`data`) and its metadata (`_`), as on the wire,
 * with the original thywill's helpers. Setters return the message, so they chain. The
 * server's `Message` (Rust) has the same shape.
 *
 * @template [T=unknown]
 */
export class Message<T = unknown> {
    /**
     * `data` of `undefined` becomes `null`; `meta` that is not an object becomes `{}`.
     * @param {T} [data]
     * @param {Metadata} [meta]
     */
    constructor(data?: T, meta?: Metadata);
    /**
     * The payload (any JSON value).
     * @type {T}
     */
    data: T;
    /**
     * The metadata object (`_` on the wire).
     * @type {Metadata}
     */
    _: Metadata;
    /**
     * The payload.
     * @returns {T}
     */
    getData(): T;
    /**
     * Replaces the payload (`undefined` becomes `null`).
     * @template U
     * @param {U} data
     * @returns {Message<U>}
     */
    setData<U>(data: U): Message<U>;
    /**
     * The whole metadata object.
     * @overload
     * @returns {Metadata}
     */
    getMetadata(): Metadata;
    /**
     * One metadata value.
     * @overload
     * @param {string} key
     * @returns {unknown}
     */
    getMetadata(key: string): unknown;
    /**
     * Sets one metadata value; `undefined` removes the key.
     * @overload
     * @param {string} key
     * @param {unknown} value
     * @returns {this}
     */
    setMetadata(key: string, value: unknown): this;
    /**
     * Replaces the whole metadata with a copy of `metadata`.
     * @overload
     * @param {Metadata} metadata
     * @returns {this}
     */
    setMetadata(metadata: Metadata): this;
    /**
     * Removes one metadata value, or all of them without a key.
     * @param {string} [key]
     * @returns {this}
     */
    clearMetadata(key?: string): this;
    /**
     * The `type` metadata value (a string naming the kind of message), or `undefined`.
     * @returns {string | undefined}
     */
    getType(): string | undefined;
    /**
     * Sets the `type` metadata value; `undefined` or `null` removes it.
     * @param {string | null | undefined} type
     * @returns {this}
     */
    setType(type: string | null | undefined): this;
    /**
     * A plain object `{data, _}` (a copy of the metadata object; `data` is not copied).
     * @returns {{ data: T, _: Metadata }}
     */
    toObject(): {
        data: T;
        _: Metadata;
    };
    /**
     * `{data, _}`, for `JSON.stringify`.
     * @returns {{ data: T, _: Metadata }}
     */
    toJSON(): {
        data: T;
        _: Metadata;
    };
    /**
     * The message as JSON text: `{"data":…,"_":{…}}`.
     * @returns {string}
     */
    toString(): string;
}
/** The rejection of a failed RPC call: why it failed (`code`) and which function. */
export class RpcError extends Error {
    /**
     * @param {RpcErrorCode} code
     * @param {string} [message]
     * @param {string} [functionName]
     */
    constructor(code: RpcErrorCode, message?: string, functionName?: string);
    /**
     * Why it failed.
     * @readonly
     * @type {RpcErrorCode}
     */
    readonly code: RpcErrorCode;
    /**
     * The function called, when known.
     * @readonly
     * @type {string | null}
     */
    readonly functionName: string | null;
}
import type { Metadata } from './types.js';
import type { RpcErrorCode } from './types.js';
