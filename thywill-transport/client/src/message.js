// @ts-check
import { isObject } from './util.js';

/** @import { Metadata, RpcErrorCode } from './types.js' */

/**
 * An application message: a JSON payload (`data`) and its metadata (`_`), as on the wire,
 * with the original thywill's helpers. Setters return the message, so they chain. The
 * server's `Message` (Rust) has the same shape.
 *
 * @template [T=unknown]
 */
export class Message {
  /**
   * `data` of `undefined` becomes `null`; `meta` that is not an object becomes `{}`.
   * @param {T} [data]
   * @param {Metadata} [meta]
   */
  constructor(data, meta) {
    /**
     * The payload (any JSON value).
     * @type {T}
     */
    this.data = data === undefined ? /** @type {T} */ (null) : data;
    /**
     * The metadata object (`_` on the wire).
     * @type {Metadata}
     */
    this._ = isObject(meta) ? meta : {};
  }

  /**
   * The payload.
   * @returns {T}
   */
  getData() {
    return this.data;
  }

  /**
   * Replaces the payload (`undefined` becomes `null`).
   * @template U
   * @param {U} data
   * @returns {Message<U>}
   */
  setData(data) {
    var self = /** @type {Message<any>} */ (this);
    self.data = data === undefined ? null : data;
    return self;
  }

  /**
   * The whole metadata object.
   * @overload
   * @returns {Metadata}
   */
  /**
   * One metadata value.
   * @overload
   * @param {string} key
   * @returns {unknown}
   */
  /**
   * @param {string} [key]
   * @returns {unknown}
   */
  getMetadata(key) {
    return key === undefined ? this._ : this._[key];
  }

  /**
   * Sets one metadata value; `undefined` removes the key.
   * @overload
   * @param {string} key
   * @param {unknown} value
   * @returns {this}
   */
  /**
   * Replaces the whole metadata with a copy of `metadata`.
   * @overload
   * @param {Metadata} metadata
   * @returns {this}
   */
  /**
   * @param {string | Metadata} key
   * @param {unknown} [value]
   * @returns {this}
   */
  setMetadata(key, value) {
    if (isObject(key)) {
      this._ = Object.assign({}, key);
    } else if (typeof key === 'string') {
      if (value === undefined) {
        delete this._[key];
      } else {
        this._[key] = value;
      }
    } else {
      throw new TypeError('thywill: setMetadata takes a key and a value, or an object');
    }
    return this;
  }

  /**
   * Removes one metadata value, or all of them without a key.
   * @param {string} [key]
   * @returns {this}
   */
  clearMetadata(key) {
    if (key === undefined) {
      this._ = {};
    } else {
      delete this._[key];
    }
    return this;
  }

  /**
   * The `type` metadata value (a string naming the kind of message), or `undefined`.
   * @returns {string | undefined}
   */
  getType() {
    return /** @type {string | undefined} */ (this._.type);
  }

  /**
   * Sets the `type` metadata value; `undefined` or `null` removes it.
   * @param {string | null | undefined} type
   * @returns {this}
   */
  setType(type) {
    if (type === undefined || type === null) {
      delete this._.type;
    } else {
      this._.type = type;
    }
    return this;
  }

  /**
   * A plain object `{data, _}` (a copy of the metadata object; `data` is not copied).
   * @returns {{ data: T, _: Metadata }}
   */
  toObject() {
    return { data: this.data, _: Object.assign({}, this._) };
  }

  /**
   * `{data, _}`, for `JSON.stringify`.
   * @returns {{ data: T, _: Metadata }}
   */
  toJSON() {
    return this.toObject();
  }

  /**
   * The message as JSON text: `{"data":…,"_":{…}}`.
   * @returns {string}
   */
  toString() {
    return JSON.stringify(this);
  }
}

/** @type {Record<string, string>} */
var RPC_MESSAGES = {
  np: 'permission refused',
  nf: 'no such function',
  ba: 'bad arguments',
  he: 'the function failed',
  to: 'timed out',
  dc: 'disconnected'
};

/** The rejection of a failed RPC call: why it failed (`code`) and which function. */
export class RpcError extends Error {
  /**
   * @param {RpcErrorCode} code
   * @param {string} [message]
   * @param {string} [functionName]
   */
  constructor(code, message, functionName) {
    super(message || RPC_MESSAGES[code] || 'rpc failed');
    this.name = 'RpcError';
    /**
     * Why it failed.
     * @readonly
     * @type {RpcErrorCode}
     */
    this.code = code;
    /**
     * The function called, when known.
     * @readonly
     * @type {string | null}
     */
    this.functionName = functionName === undefined ? null : functionName;
  }
}
