// @ts-check
// Small helpers shared by the client's modules.

/**
 * The page's global object (`window`; `globalThis` outside a page).
 * @type {any}
 */
export var global = typeof window !== 'undefined' ? window : globalThis;

var console = global.console;

/**
 * Whether `v` is a plain JSON object (not null, not an array).
 * @param {unknown} v
 * @returns {v is Record<string, any>}
 */
export function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** @param {unknown} appId */
export function checkAppId(appId) {
  if (typeof appId !== 'string' || appId === '') {
    throw new TypeError('thywill: an application id must be a non-empty string, got ' + String(appId));
  }
}

/**
 * @param {string} name
 * @param {unknown} v
 */
export function checkDelay(name, v) {
  if (typeof v !== 'number' || !isFinite(v) || v < 0) {
    throw new RangeError('thywill: ' + name + ' must be a finite number of milliseconds >= 0, got ' + String(v));
  }
}

/**
 * Calls a listener or hook; its exceptions are logged and never reach the library.
 * @param {Function} fn
 * @param {unknown} self
 * @param {unknown[]} args
 * @param {string} what
 */
export function callSafely(fn, self, args, what) {
  try {
    fn.apply(self, args);
  } catch (e) {
    console.error('thywill: a ' + what + ' handler threw', e);
  }
}

/**
 * @param {number} lo
 * @param {number} hi
 */
export function randomBetween(lo, hi) {
  return lo + Math.random() * Math.max(0, hi - lo);
}

/**
 * A new random tab id: 16 hex digits from `crypto.getRandomValues` (from Math.random where
 * the Web Crypto API is missing, which only makes collisions likelier).
 * @returns {string}
 */
export function newTabId() {
  var bytes = new Uint8Array(8);
  var crypto = global.crypto;
  if (crypto && typeof crypto.getRandomValues === 'function') {
    crypto.getRandomValues(bytes);
  } else {
    for (var i = 0; i < bytes.length; i++) {
      bytes[i] = Math.floor(Math.random() * 256);
    }
  }
  return Array.prototype.map.call(bytes, function (/** @type {number} */ b) {
    return (b < 16 ? '0' : '') + b.toString(16);
  }).join('');
}

/**
 * Whether `v` is an integer that JSON numbers and Rust's u64 agree on, and at least `min`.
 * @param {unknown} v
 * @param {number} min
 * @returns {v is number}
 */
export function isCount(v, min) {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
}
