// The event emitter under `Thywill` and every `ApplicationInterface`. TypeScript rather than
// JavaScript with JSDoc, as the rest: its typed `emit` takes the listener's parameters as a
// rest tuple, which JSDoc cannot declare.
import type { Listener, ListenerArgs, NotIn } from './types.js';
import { callSafely } from './util.js';

interface Entry {
  fn: Function;
  once: boolean;
}

const LISTENERS = Symbol('thywill.listeners');

function listenersOf(emitter: object): Map<string, Entry[]> {
  if (!Object.prototype.hasOwnProperty.call(emitter, LISTENERS)) {
    Object.defineProperty(emitter, LISTENERS, { value: new Map() });
  }
  return (emitter as { [LISTENERS]: Map<string, Entry[]> })[LISTENERS];
}

/**
 * A minimal event emitter. Listener exceptions are caught and logged with `console.error`;
 * they never break the library or the other listeners.
 *
 * `E` maps known event names to listener types; other names are accepted untyped, for
 * subclasses' own events.
 */
export class Emitter<E = {}> {
  /** Adds a listener. */
  on<K extends keyof E & string>(event: K, fn: E[K]): this;
  on<N extends string>(event: N & NotIn<N, E>, fn: Listener): this;
  on(event: string, fn: unknown): this {
    return addListener(this, event, fn, false);
  }

  /** Adds a listener that is removed after its first call. */
  once<K extends keyof E & string>(event: K, fn: E[K]): this;
  once<N extends string>(event: N & NotIn<N, E>, fn: Listener): this;
  once(event: string, fn: unknown): this {
    return addListener(this, event, fn, true);
  }

  /**
   * Removes `fn` from `event` (its most recent registration), every listener of `event`
   * without `fn`, or every listener without arguments.
   */
  off<K extends keyof E & string>(event: K, fn?: E[K]): this;
  off(event?: string, fn?: Listener): this;
  off(event?: string, fn?: unknown): this {
    const map = listenersOf(this);
    if (event === undefined) {
      map.clear();
      return this;
    }
    if (fn === undefined) {
      map.delete(event);
      return this;
    }
    const list = map.get(event);
    if (!list) {
      return this;
    }
    for (let i = list.length - 1; i >= 0; i--) {
      if (list[i].fn === fn) {
        list.splice(i, 1);
        break;
      }
    }
    if (list.length === 0) {
      map.delete(event);
    }
    return this;
  }

  /** Calls the listeners of `event` in registration order; true when there were any. */
  emit<K extends keyof E & string>(event: K, ...args: ListenerArgs<E[K]>): boolean;
  emit<N extends string>(event: N & NotIn<N, E>, ...args: unknown[]): boolean;
  emit(event: string, ...args: unknown[]): boolean {
    const list = listenersOf(this).get(event);
    if (!list || list.length === 0) {
      return false;
    }
    const snapshot = list.slice();
    for (let i = 0; i < snapshot.length; i++) {
      const entry = snapshot[i];
      if (entry.once) {
        const at = list.indexOf(entry);
        if (at < 0) {
          continue; // a once-listener already consumed by a nested emit
        }
        list.splice(at, 1);
      }
      callSafely(entry.fn, this, args, '"' + String(event) + '"');
    }
    if (list.length === 0) {
      listenersOf(this).delete(event);
    }
    return true;
  }

  /** Number of listeners of `event`. */
  listenerCount(event: string): number {
    const list = listenersOf(this).get(event);
    return list ? list.length : 0;
  }
}

function addListener<T extends object>(emitter: T, event: string, fn: unknown, once: boolean): T {
  if (typeof fn !== 'function') {
    throw new TypeError('thywill: a listener must be a function');
  }
  const map = listenersOf(emitter);
  let list = map.get(event);
  if (!list) {
    list = [];
    map.set(event, list);
  }
  list.push({ fn: fn, once: once });
  return emitter;
}
