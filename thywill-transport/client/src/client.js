// @ts-check
// The connection (one per page), streams, remote procedure calls, resources on demand, and
// the two public faces: `Thywill` (a `ThywillClient`) and `ApplicationInterface`.
import { Emitter } from './emitter.js';
import { Message, RpcError } from './message.js';
import { callSafely, checkAppId, checkDelay, global, isCount, isObject, newTabId, randomBetween } from './util.js';

/** @import { Frame, Outgoing, Pending, Session, StreamState } from './internal.js' */
/**
 * @import { ApplicationEvents, CloseInfo, ContinuityLostInfo, LoadKind, NotIn, Options, RpcArgs,
 *   RpcCall, RpcCallback, RpcErrorCode, RpcOptions, RpcResult, ServerErrorFrame, State,
 *   StreamPosition, ThywillEvents } from './types.js'
 */

var console = global.console;

/** Protocol version this client speaks. */
var PROTOCOL_VERSION = 1;
/** Path of this script under the base path. */
var SCRIPT_SUFFIX = '/thywill/thywill.js';
/**
 * Most messages kept, unacknowledged or waiting for a connection, in all; beyond that the
 * oldest are dropped.
 */
var MAX_BUFFERED = 1000;
/** How long a gap in a stream may stay open before the client asks for a replay (ms). */
var GAP_WAIT = 250;
/** How often the client asks again while a gap stays open (ms). */
var RESUME_RETRY = 1000;
/**
 * Replay requests for one gap (or one change of epoch) without any progress after which the
 * client gives up on it, reports the loss itself and carries on (about 10 s).
 */
var MAX_RESUME_ASKS = 10;
/** Most messages held back by one stream while a gap before them is open. */
var MAX_HELD_PER_STREAM = 10000;
/** Most messages held back by all streams together. */
var MAX_HELD = 20000;
/** Most streams the client keeps a position for; the least recently active are forgotten. */
var MAX_STREAMS = 256;
/** Most characters of stream positions in one `hello` (the server's frame limit is 64 KiB). */
var MAX_POSITIONS_CHARS = 32768;
/** Most application ids remembered per stream (to address `continuityLost`); beyond: all. */
var MAX_STREAM_APPS = 32;
/** Default RPC timeout in milliseconds. */
var DEFAULT_RPC_TIMEOUT = 10000;
/** The largest delay setTimeout accepts. */
var MAX_TIMER = 0x7fffffff;
/**
 * Close codes after which the client retries slowly, at the maximum delay: policy violation,
 * session refused (the page may want to reload: see the `disconnected` info), rate limited.
 */
var SLOW_RETRY_CODES = [1008, 4401, 4429];
/**
 * Connection events, passed on to every ApplicationInterface. The other events of `Thywill`
 * are `received`, `serverError` and `continuityLost` (passed on to the interfaces they
 * concern), `stateChange` and `loaded`.
 */
var EVENTS = ['connecting', 'connected', 'disconnected', 'connectionFailure'];

// ------------------------------------------------------------------------------------------
// ------------------------------------------------------------------------------------------
// Connection state (one per page)
// ------------------------------------------------------------------------------------------

/**
 * The classic script's own tag (its `src`, `data-base`, `data-url`, `data-auto-connect`);
 * null in the package, whose code is part of the page's own modules.
 * @type {HTMLScriptElement | null}
 */
var script = THYWILL_CLASSIC && global.document ? global.document.currentScript : null;

/** The base path this script was served under, without a trailing slash ('' at the root). */
var basePath = (function () {
  if (!THYWILL_CLASSIC) {
    return ''; // the package: `configure({url})` names the endpoint
  }
  // A bundle that contains this script says where it is served with `data-base`.
  var declared = script ? script.getAttribute('data-base') : null;
  if (declared !== null) {
    return declared.replace(/\/+$/, '');
  }
  if (!script || !script.src) {
    console.warn('thywill: cannot locate thywill.js; assuming the root base path (use Thywill.configure({url}))');
    return '';
  }
  var path = new URL(script.src, global.location.href).pathname;
  if (path.slice(-SCRIPT_SUFFIX.length) !== SCRIPT_SUFFIX) {
    console.warn('thywill: thywill.js is not served at <base>' + SCRIPT_SUFFIX + '; assuming the root base path');
    return '';
  }
  return path.slice(0, -SCRIPT_SUFFIX.length);
})();

/** @type {{ url: string | null, minDelay: number, maxDelay: number, autoConnect: boolean }} */
var config = {
  url: null,
  minDelay: 250,
  maxDelay: 10000,
  autoConnect: !(script && script.getAttribute('data-auto-connect') === 'false')
};
if (script && script.getAttribute('data-url')) {
  config.url = script.getAttribute('data-url');
}

/** @type {State} */
var state = 'disconnected';
/** @type {WebSocket | null} */
var socket = null; // the current WebSocket, opening or open
var wanted = false; // whether the client should be (re)connecting
var controlled = false; // connect() or disconnect() was called: no automatic connect any more
var autoConnectDue = false; // the document has been parsed: the automatic connect was due
/** @type {ReturnType<typeof setTimeout> | null} */
var retryTimer = null;
var attempt = 0; // failed attempts since the last welcome
/** @type {number | null} */
var delayOverride = null; // from a `reconnect` frame
/** @type {Session | null} */
var session = null; // what the welcome frame said, while connected
var tabId = newTabId(); // this page load's id, kept across reconnects
var nextMessageId = 1;
var nextRpcId = 1;
// Messages not acknowledged yet, in id order: { id, text } (`text` is the encoded frame).
// The first `sentCount` were sent on the current connection; the rest wait for one.
/** @type {Outgoing[]} */
var outbox = [];
var sentCount = 0;
/** @type {Map<number, Pending>} */
var pending = new Map(); // rpc id -> { app, name, resolve, reject, timer }

function socketUrl() {
  var proto = global.location.protocol === 'https:' ? 'wss:' : 'ws:';
  if (config.url === null) {
    return proto + '//' + global.location.host + basePath + '/ws';
  }
  var u = new URL(config.url, global.location.href);
  if (u.protocol === 'http:') {
    u.protocol = 'ws:';
  } else if (u.protocol === 'https:') {
    u.protocol = 'wss:';
  }
  return u.href;
}

/**
 * @param {State} next
 */
function setState(next) {
  if (state === next) {
    return false;
  }
  state = next;
  Thywill.emit('stateChange', next);
  return true;
}

function clearRetry() {
  if (retryTimer !== null) {
    clearTimeout(retryTimer);
    retryTimer = null;
  }
}

/**
 * @param {RpcErrorCode} code
 * @param {string} message
 */
function failPending(code, message) {
  if (pending.size === 0) {
    return;
  }
  var entries = Array.from(pending.values());
  pending.clear();
  entries.forEach(function (p) {
    if (p.timer !== null) {
      clearTimeout(p.timer);
    }
    p.reject(new RpcError(code, message, p.name));
  });
}

/**
 * Sends one encoded frame now; false when there is no open, welcomed socket.
 * @param {string} text
 * @returns {boolean}
 */
function trySend(text) {
  if (state !== 'connected' || !socket || socket.readyState !== 1) {
    return false;
  }
  try {
    socket.send(text);
    return true;
  } catch (e) {
    console.warn('thywill: send failed', e);
    return false;
  }
}

/**
 * Keeps a message until the server acknowledges it; beyond MAX_BUFFERED kept messages the
 * oldest are dropped (never resent) with a warning.
 * @param {number} id
 * @param {string} text
 */
function enqueue(id, text) {
  outbox.push({ id: id, text: text });
  if (outbox.length > MAX_BUFFERED) {
    var count = outbox.length - MAX_BUFFERED;
    outbox.splice(0, count);
    var wasSent = Math.min(count, sentCount);
    sentCount -= wasSent;
    console.warn('thywill: ' + count + ' message(s) dropped (' + wasSent + ' sent but not acknowledged): more than ' +
      MAX_BUFFERED + ' unacknowledged or waiting for a connection');
  }
}

/**
 * Sends the kept messages not yet sent on this connection, in id order, while the socket
 * takes them. Unacknowledged messages of an earlier connection come first: after a welcome
 * every kept message counts as unsent.
 */
function flush() {
  while (sentCount < outbox.length && trySend(outbox[sentCount].text)) {
    sentCount++;
  }
}

/**
 * The server processed this tab's messages up to `id` (an `ack` frame): forget them.
 * @param {unknown} id
 */
function acknowledged(id) {
  if (!isCount(id, 0)) {
    console.warn('thywill: invalid ack frame ignored', id);
    return;
  }
  var count = 0;
  while (count < outbox.length && outbox[count].id <= id) {
    count++;
  }
  if (count > 0) {
    outbox.splice(0, count);
    sentCount = Math.max(0, sentCount - count);
  }
}

function open() {
  clearRetry();
  if (socket || state !== 'disconnected' || !wanted) {
    return;
  }
  setState('connecting');
  Thywill.emit('connecting');
  if (!wanted || socket || /** @type {State} */ (state) !== 'connecting') {
    return; // a listener changed its mind
  }
  var url;
  /** @type {WebSocket} */
  var ws;
  try {
    url = socketUrl();
    ws = new global.WebSocket(url);
  } catch (e) {
    console.error('thywill: cannot open a WebSocket to ' + String(url), e);
    closed(0, String(e && /** @type {any} */ (e).message));
    return;
  }
  socket = ws;
  ws.onopen = function () {
    if (ws === socket) {
      /** @type {{ t: 'hello', v: number, tab: string, streams?: Record<string, { epoch: string, off: number }> }} */
      var hello = { t: 'hello', v: PROTOCOL_VERSION, tab: tabId };
      var positions = streamPositions();
      if (positions !== null) {
        hello.streams = positions;
      }
      try {
        ws.send(JSON.stringify(hello));
      } catch (e) {
        console.warn('thywill: could not send hello', e);
        return;
      }
      // The hello asked for the open gaps: ask again only if they stay open.
      restartAsks();
    }
  };
  ws.onmessage = function (/** @type {MessageEvent} */ ev) {
    if (ws === socket) {
      received(ev.data);
    }
  };
  ws.onclose = function (/** @type {CloseEvent} */ ev) {
    if (ws === socket) {
      socket = null;
      closed(ev.code, ev.reason);
    }
  };
  ws.onerror = function () {
    // A close event follows, which does the work.
  };
}

/**
 * Closes the current socket and forgets it: its later events are ignored.
 * @param {number} code
 * @param {string} reason
 */
function dropSocket(code, reason) {
  var ws = socket;
  socket = null;
  if (ws) {
    try {
      ws.close(code, reason);
    } catch (e) {
      // Already closing.
    }
  }
}

/**
 * The socket ended (or never opened): update the state, tell everybody, plan a retry.
 * @param {number} code
 * @param {string} reason
 */
function closed(code, reason) {
  var wasConnected = state === 'connected';
  session = null;
  sentCount = 0;
  stopAsks();
  failPending('dc', 'the connection closed');
  if (state !== 'disconnected') {
    setState('disconnected');
    var info = { code: code, reason: reason || '' };
    if (wasConnected) {
      Thywill.emit('disconnected', info);
    } else {
      Thywill.emit('connectionFailure', info);
    }
  }
  if (wanted && !socket && state === 'disconnected' && retryTimer === null) {
    scheduleRetry(code);
  }
}

/**
 * @param {number} code
 */
function scheduleRetry(code) {
  var delay;
  if (delayOverride !== null) {
    delay = delayOverride;
    delayOverride = null;
  } else if (SLOW_RETRY_CODES.indexOf(code) >= 0) {
    delay = randomBetween(config.maxDelay / 2, config.maxDelay);
    attempt++;
  } else {
    // Full jitter between minDelay and an exponentially growing cap (factor 2).
    var cap = Math.min(config.maxDelay, config.minDelay * Math.pow(2, Math.min(attempt, 30) + 1));
    delay = randomBetween(config.minDelay, cap);
    attempt++;
  }
  retryTimer = setTimeout(function () {
    retryTimer = null;
    open();
  }, Math.min(MAX_TIMER, Math.round(delay)));
}

/**
 * @param {unknown} raw
 */
function received(raw) {
  if (typeof raw !== 'string') {
    console.warn('thywill: binary frame ignored');
    return;
  }
  /** @type {Frame} */
  var f;
  try {
    f = JSON.parse(raw);
  } catch (e) {
    console.warn('thywill: malformed frame ignored', raw);
    return;
  }
  if (!isObject(f) || typeof f.t !== 'string') {
    console.warn('thywill: frame without a type ignored', f);
    return;
  }
  switch (f.t) {
    case 'welcome':
      welcomed(f);
      break;
    case 'msg':
      if (isStreamMessage(f)) {
        streamMessage(f);
      } else {
        deliverMessage(null, f);
      }
      break;
    case 'skip':
      // A stream message this connection is excluded from: it only takes its offset.
      if (isStreamMessage(f)) {
        streamMessage(f);
      } else {
        console.warn('thywill: invalid skip frame ignored', f);
      }
      break;
    case 'ack':
      acknowledged(f.id);
      break;
    case 'continuity_lost':
      continuityLost(f);
      break;
    case 'rpc_ok':
    case 'rpc_err':
      replied(f);
      break;
    case 'error':
      console.warn('thywill: server error ' + String(f.code) + ': ' + String(f.message), f);
      Thywill.emit('serverError', /** @type {ServerErrorFrame} */ (/** @type {unknown} */ (f)));
      break;
    case 'load':
      // Progressive exposure: the server tells the page to load a resource of its own
      // origin. Anything but a plain absolute path there is refused (see resourceUrl).
      if (LOAD_KINDS.indexOf(f.kind) < 0 || resourceUrl(f.path) === null) {
        console.warn('thywill: invalid load frame refused', f);
        return;
      }
      Thywill.load(f.kind, f.path).catch(function (error) {
        console.warn('thywill: cannot load ' + f.kind + ' ' + f.path, error);
      });
      break;
    case 'reconnect': {
      var after = typeof f.after_ms === 'number' && isFinite(f.after_ms) ? f.after_ms : 0;
      delayOverride = Math.max(0, Math.min(after, MAX_TIMER));
      dropSocket(1000, 'reconnect requested');
      closed(1000, 'reconnect requested by the server');
      break;
    }
    default:
      // A frame type from a newer server: ignore it.
      break;
  }
}

/**
 * @param {Frame} f
 */
function welcomed(f) {
  if (f.v !== PROTOCOL_VERSION) {
    console.warn('thywill: the server speaks protocol version ' + String(f.v) + ', this client ' + PROTOCOL_VERSION);
  }
  session = {
    connection: typeof f.connection === 'string' ? f.connection : null,
    session: typeof f.session === 'string' ? f.session : null,
    member: typeof f.member === 'string' ? f.member : null,
    apps: Array.isArray(f.apps) ? f.apps.slice() : []
  };
  attempt = 0;
  if (state === 'connected') {
    return;
  }
  // Kept messages go first (unacknowledged, then buffered, in id order), so that anything
  // sent by `connected` listeners follows them.
  state = 'connected';
  sentCount = 0;
  flush();
  Thywill.emit('stateChange', state);
  if (state === 'connected') {
    Thywill.emit('connected');
  }
}

// ------------------------------------------------------------------------------------------
// Streams: messages to a channel or a session, delivered in order and once
// ------------------------------------------------------------------------------------------

/**
 * Stream name -> { name, epoch, last, held, mismatch, timer, asks, lostPending, apps }: the
 * position of every stream the page has seen (at most MAX_STREAMS, the same bound as the
 * server's per `hello`), least recently active first (an active stream moves to the end).
 * - `epoch`, `last`: the epoch and the offset of the last message delivered; epoch '' means
 *   no position (the next message of the stream is taken as its starting point);
 * - `held`: offset -> frame (`msg` or `skip`), messages that arrived before the gap ahead
 *   of them filled;
 * - `mismatch`: a message of another epoch arrived, a replay was asked for;
 * - `timer`, `asks`: the pending replay request and how many were sent without progress;
 * - `lostPending`: the client gave up on an epoch change: report it with the next message;
 * - `apps`: the applications whose messages the stream carried (null: too many to list).
 */
var streams = new Map();
/** Messages held by all streams. */
var heldCount = 0;

/**
 * Whether a `msg` (or `skip`) frame carries a usable stream offset; a message without one
 * is delivered as it comes.
 * @param {Frame} f
 * @returns {boolean}
 */
function isStreamMessage(f) {
  return typeof f.stream === 'string' && f.stream !== '' &&
    typeof f.epoch === 'string' && f.epoch !== '' && isCount(f.off, 1);
}

/**
 * Emits `received` for a message frame and notes its application in its stream `st`; a
 * `skip` frame (a message this connection is excluded from) only took its place in order.
 * @param {StreamState | null} st
 * @param {Frame} f
 */
function deliverMessage(st, f) {
  if (f.t === 'skip') {
    return;
  }
  if (typeof f.app !== 'string') {
    console.warn('thywill: message without an application ignored', f);
    return;
  }
  if (st !== null && st.apps !== null && !st.apps.has(f.app)) {
    if (st.apps.size < MAX_STREAM_APPS) {
      st.apps.add(f.app);
    } else {
      st.apps = null;
    }
  }
  Thywill.emit('received', f.app, new Message(f.data, f._));
}

/**
 * The state of stream `name`, marked as the most recently active; null when unknown.
 * @param {string} name
 * @returns {StreamState | null}
 */
function touchStream(name) {
  var st = streams.get(name);
  if (st !== undefined) {
    streams.delete(name);
    streams.set(name, st);
  }
  return st === undefined ? null : st;
}

/**
 * Starts keeping a position for stream `name` (after the message `last` of `epoch`). Beyond
 * MAX_STREAMS the least recently active stream is forgotten (its held messages delivered
 * first, past their gaps, which are reported).
 * @param {string} name
 * @param {string} epoch
 * @param {number} last
 * @returns {StreamState}
 */
function addStream(name, epoch, last) {
  if (streams.size >= MAX_STREAMS) {
    var oldest = streams.values().next().value;
    if (oldest.held.size > 0) {
      reportLoss(oldest, oldest.epoch, oldest.last + 1);
      flushHeld(oldest, Infinity);
    }
    clearAsk(oldest);
    streams.delete(oldest.name);
  }
  var st = {
    name: name,
    epoch: epoch,
    last: last,
    held: new Map(),
    mismatch: false,
    timer: null,
    asks: 0,
    lostPending: false,
    apps: new Set()
  };
  streams.set(name, st);
  return st;
}

/**
 * A `msg` or `skip` frame with a stream offset: deliver, drop, hold or ask for a replay.
 * @param {Frame} f
 */
function streamMessage(f) {
  var st = touchStream(f.stream);
  if (st === null) {
    // A stream not seen before: this message is its starting point.
    st = addStream(f.stream, f.epoch, f.off - 1);
  } else if (st.epoch === '') {
    // No position (the server's log was gone, or the client gave up): a new starting point.
    st.epoch = f.epoch;
    st.last = f.off - 1;
    st.mismatch = false;
    if (st.lostPending) {
      st.lostPending = false;
      reportLoss(st, f.epoch, f.off);
    }
  }
  if (f.epoch !== st.epoch) {
    // Another log: the server must say where to continue. Ask now, unless a request is due.
    st.mismatch = true;
    if (st.timer === null) {
      askNow(st);
    }
    return;
  }
  if (f.off <= st.last) {
    return; // a duplicate (replayed, or resent by both a replay and the live path)
  }
  if (f.off === st.last + 1) {
    st.asks = 0;
    st.last = f.off;
    deliverMessage(st, f);
    drain(st);
    settle(st);
    return;
  }
  hold(st, f);
}

/**
 * Delivers the held messages that follow the stream's position without a gap.
 * @param {StreamState} st
 */
function drain(st) {
  var next = st.held.get(st.last + 1);
  while (next !== undefined) {
    st.held.delete(st.last + 1);
    heldCount--;
    st.last++;
    deliverMessage(st, next);
    next = st.held.get(st.last + 1);
  }
}

/**
 * Delivers, in offset order, the held messages of a stream below offset `below`, past the
 * gaps between them: used when the server says those gaps can never be filled. They were
 * never delivered and will not be replayed, so delivering them loses the least.
 * @param {StreamState} st
 * @param {number} below
 */
function flushHeld(st, below) {
  /** @type {number[]} */
  var offsets = [];
  st.held.forEach(function (frame, off) {
    if (off < below) {
      offsets.push(off);
    }
  });
  offsets.sort(function (a, b) {
    return a - b;
  });
  offsets.forEach(function (off) {
    var frame = /** @type {Frame} */ (st.held.get(off));
    st.held.delete(off);
    heldCount--;
    st.last = Math.max(st.last, off);
    deliverMessage(st, frame);
  });
}

/**
 * Holds a message that arrived ahead of a gap, and asks for a replay if the gap is not
 * filled within GAP_WAIT. Past the bounds (per stream and in all), the stream holding the
 * most gives up on its older gaps (see `relieve`).
 * @param {StreamState} st
 * @param {Frame} f
 */
function hold(st, f) {
  if (st.held.has(f.off)) {
    return; // held already
  }
  st.held.set(f.off, f);
  heldCount++;
  if (st.held.size > MAX_HELD_PER_STREAM) {
    console.warn('thywill: more than ' + MAX_HELD_PER_STREAM + ' messages of ' + st.name + ' wait for a gap to fill: skipping gaps');
    relieve(st);
  } else if (heldCount > MAX_HELD) {
    var largest = st;
    streams.forEach(function (other) {
      if (other.held.size > largest.held.size) {
        largest = other;
      }
    });
    console.warn('thywill: more than ' + MAX_HELD + ' messages wait for gaps to fill: skipping gaps of ' + largest.name);
    relieve(largest);
  }
  settle(st);
}

/**
 * Makes room in a stream that holds too much: reports the loss, then delivers the older half
 * of its held messages past the gaps between them (and whatever follows them without a gap),
 * so that one overflow frees many places at once.
 * @param {StreamState} st
 */
function relieve(st) {
  var offsets = Array.from(st.held.keys()).sort(function (a, b) {
    return a - b;
  });
  reportLoss(st, st.epoch, offsets[0]);
  flushHeld(st, offsets[Math.floor(offsets.length / 2)]);
  st.asks = 0;
  drain(st);
  settle(st);
}

/**
 * Gives up on the first gap of a stream: reports the loss, then delivers the held messages
 * from the first one after the gap on.
 * @param {StreamState} st
 */
function skipGap(st) {
  var first = Infinity;
  st.held.forEach(function (frame, off) {
    first = Math.min(first, off);
  });
  if (first === Infinity) {
    return;
  }
  st.last = first - 1;
  st.asks = 0;
  reportLoss(st, st.epoch, first);
  drain(st);
  settle(st);
}

/**
 * Tells the page that messages of a stream before `next` (in `epoch`) will never arrive:
 * the `continuityLost` event, which the ApplicationInterfaces of the applications that
 * received messages of the stream pass on (all of them when that is not known).
 * @param {StreamState} st
 * @param {string} epoch
 * @param {number} next
 */
function reportLoss(st, epoch, next) {
  Thywill.emit('continuityLost', {
    stream: st.name,
    epoch: epoch,
    next: next,
    apps: st.apps === null ? [] : Array.from(st.apps)
  });
}

/**
 * Whether a stream waits for a replay: a gap is open or a message of another epoch came.
 * @param {StreamState} st
 * @returns {boolean}
 */
function needsReplay(st) {
  return st.held.size > 0 || st.mismatch;
}

/**
 * Plans or cancels the stream's replay request after a change: a new wait of GAP_WAIT when
 * a replay is needed and none is planned, no request when none is needed.
 * @param {StreamState} st
 */
function settle(st) {
  if (!needsReplay(st)) {
    clearAsk(st);
    st.asks = 0;
  } else if (st.timer === null) {
    planAsk(st, GAP_WAIT);
  }
}

/**
 * Cancels the stream's planned replay request.
 * @param {StreamState} st
 */
function clearAsk(st) {
  if (st.timer !== null) {
    clearTimeout(st.timer);
    st.timer = null;
  }
}

/**
 * Plans a replay request for the stream in `delay` ms (if it is still needed then).
 * @param {StreamState} st
 * @param {number} delay
 */
function planAsk(st, delay) {
  clearAsk(st);
  st.timer = setTimeout(function () {
    st.timer = null;
    if (streams.get(st.name) === st && needsReplay(st)) {
      askNow(st);
    }
  }, delay);
}

/**
 * Sends `resume` for the stream now and plans the next request in RESUME_RETRY ms; after
 * MAX_RESUME_ASKS requests without progress it gives up: a gap is skipped (reported as
 * lost), an epoch change makes the next message the stream's starting point.
 * @param {StreamState} st
 */
function askNow(st) {
  if (st.asks >= MAX_RESUME_ASKS) {
    console.warn('thywill: the server did not replay ' + st.name + ' after ' + st.asks + ' requests: giving up');
    st.asks = 0;
    if (st.mismatch) {
      // What the old epoch held comes first; the next message starts the stream anew.
      flushHeld(st, Infinity);
      st.mismatch = false;
      st.epoch = '';
      st.last = 0;
      st.lostPending = true;
    } else {
      skipGap(st);
    }
    settle(st);
    return;
  }
  /** @type {Record<string, { epoch: string, off: number }>} */
  var streamsAsked = {};
  streamsAsked[st.name] = { epoch: st.epoch, off: st.last };
  if (trySend(JSON.stringify({ t: 'resume', streams: streamsAsked }))) {
    st.asks++;
  }
  planAsk(st, RESUME_RETRY);
}

/** Cancels every planned replay request (the connection closed). */
function stopAsks() {
  streams.forEach(clearAsk);
}

/**
 * After a `hello`, which asked for every open gap: ask again in RESUME_RETRY ms for those
 * still open then, with a fresh count.
 */
function restartAsks() {
  streams.forEach(function (st) {
    st.asks = 0;
    if (needsReplay(st)) {
      planAsk(st, RESUME_RETRY);
    }
  });
}

/**
 * The positions for `hello`: {stream: {epoch, off}} of the known streams that have one,
 * most recently active first, within MAX_POSITIONS_CHARS; null when there is none.
 * @returns {Record<string, { epoch: string, off: number }> | null}
 */
function streamPositions() {
  var list = Array.from(streams.values());
  /** @type {Record<string, { epoch: string, off: number }>} */
  var positions = {};
  var chars = 0;
  var any = false;
  for (var i = list.length - 1; i >= 0; i--) {
    var st = list[i];
    if (st.epoch === '') {
      continue;
    }
    var position = { epoch: st.epoch, off: st.last };
    chars += JSON.stringify(st.name).length + JSON.stringify(position).length + 2;
    if (chars > MAX_POSITIONS_CHARS) {
      console.warn('thywill: too many streams to name in hello; the least recently active are not replayed');
      break;
    }
    positions[st.name] = position;
    any = true;
  }
  return any ? positions : null;
}

/**
 * A `continuity_lost` frame: the server cannot replay the stream before `next` in `epoch`.
 * The page is told (`continuityLost`, unless it already had everything before `next` in
 * that epoch); the messages the client held from before `next` (or from the old epoch) are
 * delivered, in order, since nobody can send them again; then the stream continues at
 * `next`, with the held messages that follow.
 * @param {Frame} f
 */
function continuityLost(f) {
  if (typeof f.stream !== 'string' || f.stream === '' || typeof f.epoch !== 'string' || !isCount(f.next, 0)) {
    console.warn('thywill: invalid continuity_lost frame ignored', f);
    return;
  }
  var next = Math.max(1, f.next);
  var st = touchStream(f.stream);
  if (st === null) {
    st = addStream(f.stream, f.epoch, next - 1);
    reportLoss(st, f.epoch, next);
  } else if (st.epoch === f.epoch) {
    // Same log: only what lies between the position and `next` is lost, if anything.
    if (next > st.last + 1) {
      reportLoss(st, f.epoch, next);
      flushHeld(st, next);
      st.last = next - 1;
    }
  } else {
    reportLoss(st, f.epoch, next);
    flushHeld(st, Infinity);
    st.epoch = f.epoch;
    st.last = next - 1;
  }
  st.mismatch = false;
  st.lostPending = false;
  st.asks = 0;
  drain(st);
  clearAsk(st);
  settle(st);
}

/** A snapshot of the stream positions, for debugging: {stream: {epoch, off, held}}. */
function streamSnapshot() {
  /** @type {{ [stream: string]: StreamPosition }} */
  var out = {};
  streams.forEach(function (st) {
    out[st.name] = { epoch: st.epoch, off: st.last, held: st.held.size };
  });
  return out;
}

/**
 * @param {Frame} f
 */
function replied(f) {
  var p = pending.get(f.id);
  if (!p) {
    return; // timed out already, or not ours
  }
  pending.delete(f.id);
  if (p.timer !== null) {
    clearTimeout(p.timer);
  }
  if (f.t === 'rpc_ok') {
    p.resolve(f.result === undefined ? null : f.result);
  } else {
    p.reject(new RpcError(typeof f.code === 'string' ? /** @type {RpcErrorCode} */ (f.code) : 'he', typeof f.message === 'string' ? f.message : '', p.name));
  }
}

/**
 * @param {string} appId
 * @param {string} name
 * @param {unknown} args
 * @param {number | undefined} timeout
 * @returns {Promise<any>}
 */
function rpcCall(appId, name, args, timeout) {
  checkAppId(appId);
  if (typeof name !== 'string' || name === '') {
    throw new TypeError('thywill: an rpc function name must be a non-empty string');
  }
  if (timeout !== undefined) {
    checkDelay('timeout', timeout);
  }
  var ms = timeout === undefined ? DEFAULT_RPC_TIMEOUT : timeout;
  return new Promise(function (resolve, reject) {
    if (state !== 'connected') {
      reject(new RpcError('dc', 'not connected', name));
      return;
    }
    var id = nextRpcId++;
    var text = JSON.stringify({ t: 'rpc', app: appId, id: id, name: name, args: args === undefined ? [] : args });
    if (!trySend(text)) {
      reject(new RpcError('dc', 'not connected', name));
      return;
    }
    /** @type {Pending} */
    var entry = { app: appId, name: name, resolve: resolve, reject: reject, timer: null };
    pending.set(id, entry);
    if (ms > 0) {
      entry.timer = setTimeout(function () {
        if (pending.get(id) === entry) {
          pending.delete(id);
          reject(new RpcError('to', 'no reply within ' + ms + ' ms', name));
        }
      }, Math.min(MAX_TIMER, ms));
    }
  });
}

// ------------------------------------------------------------------------------------------
// Resources on demand (progressive exposure)
// ------------------------------------------------------------------------------------------

/** @type {unknown[]} */
var LOAD_KINDS = ['script', 'stylesheet', 'template'];
/** "kind absolute-url" -> Promise of the element; failed loads are forgotten (retryable). */
var loads = new Map();

/**
 * The URL of a resource path given by the server (a `load` frame) or by the page, or null
 * when it is not a plain absolute path of this page's origin: it must start with exactly one
 * `/` and hold no backslash, ASCII whitespace or control character (the URL parser treats
 * `\` as `/` and drops tabs and newlines, so `/\evil.example/x.js` or `/<tab>/evil.example`
 * would name another host), and it must resolve to this page's origin.
 * @param {unknown} path
 * @returns {URL | null}
 */
function resourceUrl(path) {
  if (typeof path !== 'string' || !/^\/(?!\/)/.test(path) || /[\\\u0000-\u0020\u007f]/.test(path)) {
    return null;
  }
  var url;
  var here;
  try {
    here = new URL(global.location.href);
    url = new URL(path, here);
  } catch (e) {
    return null;
  }
  return url.origin === here.origin && url.origin !== 'null' ? url : null;
}

/**
 * @template {HTMLElement} T
 * @param {T} el
 * @param {string} what
 * @param {string} url
 * @returns {Promise<T>}
 */
function appendElement(el, what, url) {
  return new Promise(function (resolve, reject) {
    el.onload = function () {
      resolve(el);
    };
    el.onerror = function () {
      el.remove();
      reject(new Error('thywill: cannot load ' + what + ' ' + url));
    };
    global.document.head.appendChild(el);
  });
}

/**
 * @param {string} url
 * @param {string} [id]
 * @returns {Promise<HTMLElement>}
 */
function fetchTemplate(url, id) {
  return global.fetch(url, { credentials: 'same-origin' }).then(function (/** @type {Response} */ response) {
    if (!response.ok) {
      throw new Error('thywill: cannot load template ' + url + ': HTTP ' + response.status);
    }
    var name = new URL(url).pathname.split('/').pop() || 'template';
    var elementId = id || response.headers.get('x-thywill-template-id') || name.split('.')[0];
    return response.text().then(function (/** @type {string} */ text) {
      var el = global.document.getElementById(elementId);
      // Only a template replaces a template: the id comes from the server (a header or the
      // file name), and must not overwrite the text of some other element of the page
      // (or of an inline script, which would then run).
      if (el && !(el.tagName === 'SCRIPT' && el.type === 'text/template')) {
        console.warn('thywill: template ' + url + ' refused: element #' + elementId + ' exists and is not a template');
        throw new Error('thywill: cannot inline template ' + url + ': #' + elementId + ' is not a template');
      }
      if (!el) {
        el = global.document.createElement('script');
        el.type = 'text/template';
        el.id = elementId;
        global.document.body.appendChild(el);
      }
      el.textContent = text;
      return el;
    });
  });
}

/**
 * @param {unknown} kind
 * @param {unknown} path
 * @param {string} [id]
 * @returns {Promise<any>}
 */
function load(kind, path, id) {
  if (LOAD_KINDS.indexOf(kind) < 0) {
    return Promise.reject(new TypeError('thywill: cannot load a ' + String(kind) + ': use ' + LOAD_KINDS.join(', ')));
  }
  var resolved = resourceUrl(path);
  if (resolved === null) {
    console.warn('thywill: refused to load ' + kind + ' ' + JSON.stringify(String(path)) + ': not a plain absolute path of this origin');
    return Promise.reject(new TypeError('thywill: a resource path must be an absolute path of this origin (/…), got ' + JSON.stringify(String(path))));
  }
  if (!global.document) {
    return Promise.reject(new Error('thywill: resources can only be loaded in a page'));
  }
  var url = resolved.href;
  var key = kind + ' ' + url;
  var known = loads.get(key);
  if (known) {
    return known;
  }
  var started;
  if (kind === 'script') {
    var el = global.document.createElement('script');
    el.src = url;
    el.async = false;
    started = appendElement(el, 'script', url);
  } else if (kind === 'stylesheet') {
    var link = global.document.createElement('link');
    link.rel = 'stylesheet';
    link.href = url;
    started = appendElement(link, 'stylesheet', url);
  } else {
    started = fetchTemplate(url, id);
  }
  var done = started.then(function (element) {
    Thywill.emit('loaded', /** @type {LoadKind} */ (kind), /** @type {string} */ (path), element);
    return element;
  });
  loads.set(key, done);
  done.catch(function () {
    loads.delete(key);
  });
  return done;
}

// ------------------------------------------------------------------------------------------
// The global
// ------------------------------------------------------------------------------------------

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
export class ThywillClient extends Emitter {
  /**
   * Changes settings (effective at the next connection attempt). Throws on invalid values.
   * @param {Options} options
   * @returns {this}
   */
  configure(options) {
    var o = options || {};
    var min = o.minDelay === undefined ? config.minDelay : o.minDelay;
    var max = o.maxDelay === undefined ? config.maxDelay : o.maxDelay;
    checkDelay('minDelay', min);
    checkDelay('maxDelay', max);
    if (min <= 0 || max < min) {
      throw new RangeError('thywill: need 0 < minDelay <= maxDelay, got ' + min + ' and ' + max);
    }
    if (o.url !== undefined && o.url !== null && typeof o.url !== 'string') {
      throw new TypeError('thywill: url must be a string or null');
    }
    if (o.autoConnect !== undefined && typeof o.autoConnect !== 'boolean') {
      throw new TypeError('thywill: autoConnect must be a boolean');
    }
    config.minDelay = min;
    config.maxDelay = max;
    if (o.url !== undefined) {
      config.url = o.url;
    }
    if (o.autoConnect !== undefined) {
      config.autoConnect = o.autoConnect;
      if (o.autoConnect && autoConnectDue && !controlled) {
        this.connect();
      }
    }
    return this;
  }

  /**
   * Connects now (even if a retry was waiting) and keeps reconnecting.
   * @returns {this}
   */
  connect() {
    controlled = true;
    wanted = true;
    if (!socket && state === 'disconnected') {
      open();
    }
    return this;
  }

  /**
   * Closes the connection and stops reconnecting until {@link ThywillClient.connect}.
   * @returns {this}
   */
  disconnect() {
    controlled = true;
    wanted = false;
    clearRetry();
    delayOverride = null;
    dropSocket(1000, 'client disconnected');
    if (state !== 'disconnected') {
      session = null;
      sentCount = 0;
      stopAsks();
      failPending('dc', 'disconnected by the client');
      setState('disconnected');
      Thywill.emit('disconnected', { code: 1000, reason: 'disconnect() called' });
    }
    return this;
  }

  /**
   * Sends data (any JSON value) or a {@link Message} to an application; kept until the server
   * acknowledges it (resent after a reconnect, processed once) and buffered while
   * disconnected (at most 1000 messages are kept in all; beyond that the oldest are dropped).
   * Returns the message's client id (increasing per page).
   * @param {string} applicationId
   * @param {unknown} data
   * @returns {number}
   */
  send(applicationId, data) {
    checkAppId(applicationId);
    var m = data instanceof Message ? data : new Message(data);
    var id = nextMessageId++;
    enqueue(id, JSON.stringify({ t: 'msg', app: applicationId, data: m.data, _: m._, id: id }));
    flush();
    return id;
  }

  /**
   * Calls a remote procedure of an application (see {@link ApplicationInterface.rpc}).
   * @template [R=unknown]
   * @param {string} applicationId
   * @param {string} name
   * @param {unknown} [args]
   * @param {RpcOptions} [options]
   * @returns {Promise<R>}
   */
  rpc(applicationId, name, args, options) {
    return rpcCall(applicationId, name, args, options && options.timeout);
  }

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
  load(kind, path) {
    return load(kind, path);
  }

  /**
   * Loads and runs a script once; resolves with its element when it has run.
   * @param {string} path
   * @returns {Promise<HTMLScriptElement>}
   */
  loadScript(path) {
    return load('script', path);
  }

  /**
   * Loads a stylesheet once; resolves with its `<link>` when it applies.
   * @param {string} path
   * @returns {Promise<HTMLLinkElement>}
   */
  loadStylesheet(path) {
    return load('stylesheet', path);
  }

  /**
   * Loads a client template once and inlines it as `<script type="text/template" id>`: the id
   * is `id`, else the server's `X-Thywill-Template-Id` header, else the file name without its
   * extension. Rejects, leaving the page alone, when an element of that id exists and is not
   * such a template.
   * @param {string} path
   * @param {string} [id]
   * @returns {Promise<HTMLScriptElement>}
   */
  loadTemplate(path, id) {
    return load('template', path, id);
  }

  /**
   * The current connection state.
   * @returns {State}
   */
  get state() {
    return state;
  }

  /**
   * Whether the state is `connected` (the welcome frame arrived and the socket is up).
   * @returns {boolean}
   */
  get isConnected() {
    return state === 'connected';
  }

  /**
   * This connection's id, from the welcome frame; null while not connected.
   * @returns {string | null}
   */
  get connectionId() {
    return session ? session.connection : null;
  }

  /**
   * The session the connection is bound to; null while not connected.
   * @returns {string | null}
   */
  get sessionId() {
    return session ? session.session : null;
  }

  /**
   * The cluster member holding the connection; null while not connected.
   * @returns {string | null}
   */
  get member() {
    return session ? session.member : null;
  }

  /**
   * The applications the server serves on this endpoint; empty while not connected.
   * @returns {string[]}
   */
  get applications() {
    return session ? session.apps.slice() : [];
  }

  /**
   * Messages waiting to be sent: while disconnected, those sent meanwhile and those not
   * acknowledged on the previous connection (all are sent after the next welcome).
   * @returns {number}
   */
  get buffered() {
    return outbox.length - sentCount;
  }

  /**
   * Messages sent on the current connection that the server has not acknowledged yet.
   * @returns {number}
   */
  get unacknowledged() {
    return sentCount;
  }

  /**
   * This page load's tab id (16 hex digits): sent in every `hello`, kept across reconnects,
   * so that the server processes each message id of the page once.
   * @returns {string}
   */
  get tab() {
    return tabId;
  }

  /**
   * A snapshot of the page's position in every stream it has seen, by stream name, for
   * debugging (the client keeps at most 256, the least recently active are forgotten).
   * @returns {{ [stream: string]: StreamPosition }}
   */
  get streams() {
    return streamSnapshot();
  }

  /**
   * The WebSocket URL the next connection attempt uses.
   * @returns {string}
   */
  get url() {
    return socketUrl();
  }

  /**
   * The base path the classic script was served under, such as `/echo` (`''` at the root,
   * and in the package).
   * @returns {string}
   */
  get basePath() {
    return basePath;
  }
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
export var Thywill = /** @type {any} */ (new ThywillClient());

// ------------------------------------------------------------------------------------------
// ApplicationInterface
// ------------------------------------------------------------------------------------------

var INTERNAL = Symbol('thywill.applicationInterface');

/**
 * The private state of an interface: whether it was destroyed, whether it knows the
 * connection's state, and its listeners on `Thywill`.
 * @param {ApplicationInterface<any>} app
 * @returns {{ destroyed: boolean, announced: boolean, listeners: Record<string, (...args: any[]) => void> }}
 */
function internals(app) {
  return /** @type {any} */ (app)[INTERNAL];
}

/**
 * @param {ApplicationInterface<any>} app
 * @param {string} event
 * @param {unknown[]} args
 */
function deliver(app, event, args) {
  var own = internals(app);
  if (own.destroyed) {
    return;
  }
  if (EVENTS.indexOf(event) >= 0) {
    own.announced = true; // the interface knows the connection's state: no replay
  }
  var hooks = /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (app));
  if (typeof hooks[event] === 'function') {
    callSafely(/** @type {Function} */ (hooks[event]), app, args, event + '() hook');
  }
  app.emit(event, ...args);
}

/**
 * @param {ApplicationInterface<any>} app
 * @param {string} name
 * @param {unknown} args
 * @param {number} timeout
 * @returns {Promise<any>}
 */
function appCall(app, name, args, timeout) {
  if (internals(app).destroyed) {
    return Promise.reject(new RpcError('dc', 'the application interface was destroyed', name));
  }
  return rpcCall(app.applicationId, name, args, timeout);
}

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
export class ApplicationInterface extends Emitter {
  /**
   * Subscribes to the connection's events. Throws a TypeError for an empty id.
   * @param {string} applicationId
   */
  constructor(applicationId) {
    super();
    checkAppId(applicationId);
    /**
     * The application this interface talks to.
     * @type {string}
     */
    this.applicationId = applicationId;
    /**
     * Default RPC timeout in milliseconds (10000; 0 waits forever): a plain field, as in the
     * original; {@link ApplicationInterface.setRpcTimeout} sets it after validating the value.
     * @type {number}
     */
    this.rpcTimeout = DEFAULT_RPC_TIMEOUT;
    var self = this;
    /** @type {{ destroyed: boolean, announced: boolean, listeners: Record<string, (...args: any[]) => void> }} */
    var own = {
      destroyed: false,
      announced: false,
      listeners: {}
    };
    Object.defineProperty(this, INTERNAL, { value: own });
    EVENTS.forEach(function (event) {
      own.listeners[event] = function () {
        deliver(self, event, Array.prototype.slice.call(arguments));
      };
    });
    own.listeners.received = function (appId, message) {
      if (appId === self.applicationId) {
        deliver(self, 'received', [message]);
      }
    };
    own.listeners.serverError = function (frame) {
      if (frame && frame.app === self.applicationId) {
        deliver(self, 'serverError', [frame]);
      }
    };
    // A stream lost messages: tell the interfaces of the applications it carried (all of
    // them when that is not known).
    own.listeners.continuityLost = function (info) {
      var apps = info && Array.isArray(info.apps) ? info.apps : [];
      if (apps.length === 0 || apps.indexOf(self.applicationId) >= 0) {
        deliver(self, 'continuityLost', [info]);
      }
    };
    Object.keys(own.listeners).forEach(function (event) {
      Thywill.on(event, own.listeners[event]);
    });
    // State replay: an interface created while the connection is up (or coming up) learns
    // it, asynchronously, so that subclass constructors and `on` calls made right after
    // `new` see it. A new interface assumes "disconnected" and is not told that.
    Promise.resolve().then(function () {
      if (own.announced || own.destroyed) {
        return;
      }
      if (state === 'connected') {
        deliver(self, 'connected', []);
      } else if (state === 'connecting') {
        deliver(self, 'connecting', []);
      }
    });
  }

  /**
   * Sends data (any JSON value) or a {@link Message} to the application on the server.
   * The message is kept until the server acknowledges it and resent after a reconnect; the
   * server processes it once. While disconnected it is buffered and sent after the next
   * welcome (at most 1000 messages are kept in all; beyond that the oldest are dropped).
   * Returns the message's client id.
   * @param {unknown} data
   * @returns {number}
   */
  send(data) {
    return Thywill.send(this.applicationId, data);
  }

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
  /**
   * The original thywill's callback form: `callback(errorCodeOrNull, result, error)`, called
   * asynchronously. Without a callback the call is fire-and-forget.
   * @template {string} C
   * @overload
   * @param {RpcCall<M, C>} call
   * @param {RpcCallback<C extends keyof M ? RpcResult<M, C> : unknown>} [callback]
   * @returns {void}
   */
  /**
   * @param {string | RpcCall<M, string>} nameOrCall
   * @param {any} [argsOrCallback]
   * @param {RpcOptions} [options]
   * @returns {Promise<any> | undefined}
   */
  rpc(nameOrCall, argsOrCallback, options) {
    if (isObject(nameOrCall)) {
      var call = nameOrCall;
      var callback = argsOrCallback;
      if (callback !== undefined && typeof callback !== 'function') {
        throw new TypeError('thywill: the rpc callback must be a function');
      }
      var done = appCall(this, call.name, call.args, call.timeout === undefined ? this.rpcTimeout : call.timeout);
      done.then(function (result) {
        if (callback) {
          callSafely(callback, null, [null, result], 'rpc callback');
        }
      }, function (error) {
        if (callback) {
          callSafely(callback, null, [error && error.code ? error.code : 'he', undefined, error], 'rpc callback');
        }
      });
      return undefined;
    }
    var timeout = options && options.timeout !== undefined ? options.timeout : this.rpcTimeout;
    return appCall(this, nameOrCall, argsOrCallback, timeout);
  }

  /**
   * Sets the default RPC timeout in milliseconds (0 waits forever).
   * @param {number} ms
   * @returns {this}
   */
  setRpcTimeout(ms) {
    checkDelay('rpc timeout', ms);
    this.rpcTimeout = ms;
    return this;
  }

  /**
   * Stops listening to the connection (other interfaces and the socket are unaffected);
   * later RPC calls reject with `dc`.
   */
  destroy() {
    var own = internals(this);
    if (own.destroyed) {
      return;
    }
    own.destroyed = true;
    Object.keys(own.listeners).forEach(function (event) {
      Thywill.off(event, own.listeners[event]);
    });
  }

  // Overridable hooks; the defaults do nothing.

  /**
   * Hook: a message for this application arrived.
   * @param {Message} message
   * @returns {void}
   */
  received(message) {}
  /**
   * Hook: the connection is up.
   * @returns {void}
   */
  connected() {}
  /**
   * Hook: a connection attempt started.
   * @returns {void}
   */
  connecting() {}
  /**
   * Hook: an established connection ended.
   * @param {CloseInfo} info
   * @returns {void}
   */
  disconnected(info) {}
  /**
   * Hook: a connection attempt failed before the welcome frame.
   * @param {CloseInfo} info
   * @returns {void}
   */
  connectionFailure(info) {}
  /**
   * Hook: the server reported an error about this application (a message it refused).
   * @param {ServerErrorFrame} frame
   * @returns {void}
   */
  serverError(frame) {}
  /**
   * Hook: messages of a stream this application received messages of were lost for good.
   * @param {ContinuityLostInfo} info
   * @returns {void}
   */
  continuityLost(info) {}
}

var classes = /** @type {any} */ (Thywill);
classes.Emitter = Emitter;
classes.Message = Message;
classes.RpcError = RpcError;
classes.ApplicationInterface = ApplicationInterface;
classes.protocolVersion = PROTOCOL_VERSION;

// ------------------------------------------------------------------------------------------
// Automatic connection
// ------------------------------------------------------------------------------------------

function autoConnect() {
  autoConnectDue = true;
  if (config.autoConnect && !controlled) {
    Thywill.connect();
  }
}

if (global.document && global.document.readyState === 'loading') {
  global.document.addEventListener('DOMContentLoaded', autoConnect, { once: true });
} else {
  setTimeout(autoConnect, 0);
}

// Back online: retry now instead of waiting out the backoff.
if (typeof global.addEventListener === 'function') {
  global.addEventListener('online', function () {
    if (wanted && retryTimer !== null) {
      open();
    }
  });
}
