import type { Listener, ListenerArgs, NotIn } from './types.js';
/**
 * A minimal event emitter. Listener exceptions are caught and logged with `console.error`;
 * they never break the library or the other listeners.
 *
 * `E` maps known event names to listener types; other names are accepted untyped, for
 * subclasses' own events.
 */
export declare class Emitter<E = {}> {
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
    /** Calls the listeners of `event` in registration order; true when there were any. */
    emit<K extends keyof E & string>(event: K, ...args: ListenerArgs<E[K]>): boolean;
    emit<N extends string>(event: N & NotIn<N, E>, ...args: unknown[]): boolean;
    /** Number of listeners of `event`. */
    listenerCount(event: string): number;
}
