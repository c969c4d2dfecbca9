/*!
 * thywill-client 0.1.0: the browser client of thywill-rs, wire protocol version 1.
 * MIT License. Built from thywill-transport/client/src by build.mjs.
 */

// src/util.js
var global = typeof window !== "undefined" ? window : globalThis;
var console = global.console;
function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}
function checkAppId(appId) {
  if (typeof appId !== "string" || appId === "") {
    throw new TypeError("thywill: an application id must be a non-empty string, got " + String(appId));
  }
}
function checkDelay(name, v) {
  if (typeof v !== "number" || !isFinite(v) || v < 0) {
    throw new RangeError("thywill: " + name + " must be a finite number of milliseconds >= 0, got " + String(v));
  }
}
function callSafely(fn, self, args, what) {
  try {
    fn.apply(self, args);
  } catch (e) {
    console.error("thywill: a " + what + " handler threw", e);
  }
}
function randomBetween(lo, hi) {
  return lo + Math.random() * Math.max(0, hi - lo);
}
function newTabId() {
  var bytes = new Uint8Array(8);
  var crypto = global.crypto;
  if (crypto && typeof crypto.getRandomValues === "function") {
    crypto.getRandomValues(bytes);
  } else {
    for (var i = 0; i < bytes.length; i++) {
      bytes[i] = Math.floor(Math.random() * 256);
    }
  }
  return Array.prototype.map.call(bytes, function(b) {
    return (b < 16 ? "0" : "") + b.toString(16);
  }).join("");
}
function isCount(v, min) {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= min;
}

// src/emitter.ts
var LISTENERS = /* @__PURE__ */ Symbol("thywill.listeners");
function listenersOf(emitter) {
  if (!Object.prototype.hasOwnProperty.call(emitter, LISTENERS)) {
    Object.defineProperty(emitter, LISTENERS, { value: /* @__PURE__ */ new Map() });
  }
  return emitter[LISTENERS];
}
var Emitter = class {
  on(event, fn) {
    return addListener(this, event, fn, false);
  }
  once(event, fn) {
    return addListener(this, event, fn, true);
  }
  off(event, fn) {
    const map = listenersOf(this);
    if (event === void 0) {
      map.clear();
      return this;
    }
    if (fn === void 0) {
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
  emit(event, ...args) {
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
          continue;
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
  listenerCount(event) {
    const list = listenersOf(this).get(event);
    return list ? list.length : 0;
  }
};
function addListener(emitter, event, fn, once) {
  if (typeof fn !== "function") {
    throw new TypeError("thywill: a listener must be a function");
  }
  const map = listenersOf(emitter);
  let list = map.get(event);
  if (!list) {
    list = [];
    map.set(event, list);
  }
  list.push({ fn, once });
  return emitter;
}

// src/message.js
var Message = class {
  /**
   * `data` of `undefined` becomes `null`; `meta` that is not an object becomes `{}`.
   * @param {T} [data]
   * @param {Metadata} [meta]
   */
  constructor(data, meta) {
    this.data = data === void 0 ? (
      /** @type {T} */
      null
    ) : data;
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
    var self = (
      /** @type {Message<any>} */
      this
    );
    self.data = data === void 0 ? null : data;
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
    return key === void 0 ? this._ : this._[key];
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
    } else if (typeof key === "string") {
      if (value === void 0) {
        delete this._[key];
      } else {
        this._[key] = value;
      }
    } else {
      throw new TypeError("thywill: setMetadata takes a key and a value, or an object");
    }
    return this;
  }
  /**
   * Removes one metadata value, or all of them without a key.
   * @param {string} [key]
   * @returns {this}
   */
  clearMetadata(key) {
    if (key === void 0) {
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
    return (
      /** @type {string | undefined} */
      this._.type
    );
  }
  /**
   * Sets the `type` metadata value; `undefined` or `null` removes it.
   * @param {string | null | undefined} type
   * @returns {this}
   */
  setType(type) {
    if (type === void 0 || type === null) {
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
};
var RPC_MESSAGES = {
  np: "permission refused",
  nf: "no such function",
  ba: "bad arguments",
  he: "the function failed",
  to: "timed out",
  dc: "disconnected"
};
var RpcError = class extends Error {
  /**
   * @param {RpcErrorCode} code
   * @param {string} [message]
   * @param {string} [functionName]
   */
  constructor(code, message, functionName) {
    super(message || RPC_MESSAGES[code] || "rpc failed");
    this.name = "RpcError";
    this.code = code;
    this.functionName = functionName === void 0 ? null : functionName;
  }
};

// src/client.js
var console2 = global.console;
var PROTOCOL_VERSION = 1;
var SCRIPT_SUFFIX = "/thywill/thywill.js";
var MAX_BUFFERED = 1e3;
var GAP_WAIT = 250;
var RESUME_RETRY = 1e3;
var MAX_RESUME_ASKS = 10;
var MAX_HELD_PER_STREAM = 1e4;
var MAX_HELD = 2e4;
var MAX_STREAMS = 256;
var MAX_POSITIONS_CHARS = 32768;
var MAX_STREAM_APPS = 32;
var DEFAULT_RPC_TIMEOUT = 1e4;
var MAX_TIMER = 2147483647;
var SLOW_RETRY_CODES = [1008, 4401, 4429];
var EVENTS = ["connecting", "connected", "disconnected", "connectionFailure"];
var script = false ? global.document.currentScript : null;
var basePath = (function() {
  if (true) {
    return "";
  }
  var declared = script ? script.getAttribute("data-base") : null;
  if (declared !== null) {
    return declared.replace(/\/+$/, "");
  }
  if (!script || !script.src) {
    console2.warn("thywill: cannot locate thywill.js; assuming the root base path (use Thywill.configure({url}))");
    return "";
  }
  var path = new URL(script.src, global.location.href).pathname;
  if (path.slice(-SCRIPT_SUFFIX.length) !== SCRIPT_SUFFIX) {
    console2.warn("thywill: thywill.js is not served at <base>" + SCRIPT_SUFFIX + "; assuming the root base path");
    return "";
  }
  return path.slice(0, -SCRIPT_SUFFIX.length);
})();
var config = {
  url: null,
  minDelay: 250,
  maxDelay: 1e4,
  autoConnect: !(script && script.getAttribute("data-auto-connect") === "false")
};
if (script && script.getAttribute("data-url")) {
  config.url = script.getAttribute("data-url");
}
var state = "disconnected";
var socket = null;
var wanted = false;
var controlled = false;
var autoConnectDue = false;
var retryTimer = null;
var attempt = 0;
var delayOverride = null;
var session = null;
var tabId = newTabId();
var nextMessageId = 1;
var nextRpcId = 1;
var outbox = [];
var sentCount = 0;
var pending = /* @__PURE__ */ new Map();
function socketUrl() {
  var proto = global.location.protocol === "https:" ? "wss:" : "ws:";
  if (config.url === null) {
    return proto + "//" + global.location.host + basePath + "/ws";
  }
  var u = new URL(config.url, global.location.href);
  if (u.protocol === "http:") {
    u.protocol = "ws:";
  } else if (u.protocol === "https:") {
    u.protocol = "wss:";
  }
  return u.href;
}
function setState(next) {
  if (state === next) {
    return false;
  }
  state = next;
  Thywill.emit("stateChange", next);
  return true;
}
function clearRetry() {
  if (retryTimer !== null) {
    clearTimeout(retryTimer);
    retryTimer = null;
  }
}
function failPending(code, message) {
  if (pending.size === 0) {
    return;
  }
  var entries = Array.from(pending.values());
  pending.clear();
  entries.forEach(function(p) {
    if (p.timer !== null) {
      clearTimeout(p.timer);
    }
    p.reject(new RpcError(code, message, p.name));
  });
}
function trySend(text) {
  if (state !== "connected" || !socket || socket.readyState !== 1) {
    return false;
  }
  try {
    socket.send(text);
    return true;
  } catch (e) {
    console2.warn("thywill: send failed", e);
    return false;
  }
}
function enqueue(id, text) {
  outbox.push({ id, text });
  if (outbox.length > MAX_BUFFERED) {
    var count = outbox.length - MAX_BUFFERED;
    outbox.splice(0, count);
    var wasSent = Math.min(count, sentCount);
    sentCount -= wasSent;
    console2.warn("thywill: " + count + " message(s) dropped (" + wasSent + " sent but not acknowledged): more than " + MAX_BUFFERED + " unacknowledged or waiting for a connection");
  }
}
function flush() {
  while (sentCount < outbox.length && trySend(outbox[sentCount].text)) {
    sentCount++;
  }
}
function acknowledged(id) {
  if (!isCount(id, 0)) {
    console2.warn("thywill: invalid ack frame ignored", id);
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
  if (socket || state !== "disconnected" || !wanted) {
    return;
  }
  setState("connecting");
  Thywill.emit("connecting");
  if (!wanted || socket || /** @type {State} */
  state !== "connecting") {
    return;
  }
  var url;
  var ws;
  try {
    url = socketUrl();
    ws = new global.WebSocket(url);
  } catch (e) {
    console2.error("thywill: cannot open a WebSocket to " + String(url), e);
    closed(0, String(e && /** @type {any} */
    e.message));
    return;
  }
  socket = ws;
  ws.onopen = function() {
    if (ws === socket) {
      var hello = { t: "hello", v: PROTOCOL_VERSION, tab: tabId };
      var positions = streamPositions();
      if (positions !== null) {
        hello.streams = positions;
      }
      try {
        ws.send(JSON.stringify(hello));
      } catch (e) {
        console2.warn("thywill: could not send hello", e);
        return;
      }
      restartAsks();
    }
  };
  ws.onmessage = function(ev) {
    if (ws === socket) {
      received(ev.data);
    }
  };
  ws.onclose = function(ev) {
    if (ws === socket) {
      socket = null;
      closed(ev.code, ev.reason);
    }
  };
  ws.onerror = function() {
  };
}
function dropSocket(code, reason) {
  var ws = socket;
  socket = null;
  if (ws) {
    try {
      ws.close(code, reason);
    } catch (e) {
    }
  }
}
function closed(code, reason) {
  var wasConnected = state === "connected";
  session = null;
  sentCount = 0;
  stopAsks();
  failPending("dc", "the connection closed");
  if (state !== "disconnected") {
    setState("disconnected");
    var info = { code, reason: reason || "" };
    if (wasConnected) {
      Thywill.emit("disconnected", info);
    } else {
      Thywill.emit("connectionFailure", info);
    }
  }
  if (wanted && !socket && state === "disconnected" && retryTimer === null) {
    scheduleRetry(code);
  }
}
function scheduleRetry(code) {
  var delay;
  if (delayOverride !== null) {
    delay = delayOverride;
    delayOverride = null;
  } else if (SLOW_RETRY_CODES.indexOf(code) >= 0) {
    delay = randomBetween(config.maxDelay / 2, config.maxDelay);
    attempt++;
  } else {
    var cap = Math.min(config.maxDelay, config.minDelay * Math.pow(2, Math.min(attempt, 30) + 1));
    delay = randomBetween(config.minDelay, cap);
    attempt++;
  }
  retryTimer = setTimeout(function() {
    retryTimer = null;
    open();
  }, Math.min(MAX_TIMER, Math.round(delay)));
}
function received(raw) {
  if (typeof raw !== "string") {
    console2.warn("thywill: binary frame ignored");
    return;
  }
  var f;
  try {
    f = JSON.parse(raw);
  } catch (e) {
    console2.warn("thywill: malformed frame ignored", raw);
    return;
  }
  if (!isObject(f) || typeof f.t !== "string") {
    console2.warn("thywill: frame without a type ignored", f);
    return;
  }
  switch (f.t) {
    case "welcome":
      welcomed(f);
      break;
    case "msg":
      if (isStreamMessage(f)) {
        streamMessage(f);
      } else {
        deliverMessage(null, f);
      }
      break;
    case "skip":
      if (isStreamMessage(f)) {
        streamMessage(f);
      } else {
        console2.warn("thywill: invalid skip frame ignored", f);
      }
      break;
    case "ack":
      acknowledged(f.id);
      break;
    case "continuity_lost":
      continuityLost(f);
      break;
    case "rpc_ok":
    case "rpc_err":
      replied(f);
      break;
    case "error":
      console2.warn("thywill: server error " + String(f.code) + ": " + String(f.message), f);
      Thywill.emit(
        "serverError",
        /** @type {ServerErrorFrame} */
        /** @type {unknown} */
        f
      );
      break;
    case "load":
      if (LOAD_KINDS.indexOf(f.kind) < 0 || resourceUrl(f.path) === null) {
        console2.warn("thywill: invalid load frame refused", f);
        return;
      }
      Thywill.load(f.kind, f.path).catch(function(error) {
        console2.warn("thywill: cannot load " + f.kind + " " + f.path, error);
      });
      break;
    case "reconnect": {
      var after = typeof f.after_ms === "number" && isFinite(f.after_ms) ? f.after_ms : 0;
      delayOverride = Math.max(0, Math.min(after, MAX_TIMER));
      dropSocket(1e3, "reconnect requested");
      closed(1e3, "reconnect requested by the server");
      break;
    }
    default:
      break;
  }
}
function welcomed(f) {
  if (f.v !== PROTOCOL_VERSION) {
    console2.warn("thywill: the server speaks protocol version " + String(f.v) + ", this client " + PROTOCOL_VERSION);
  }
  session = {
    connection: typeof f.connection === "string" ? f.connection : null,
    session: typeof f.session === "string" ? f.session : null,
    member: typeof f.member === "string" ? f.member : null,
    apps: Array.isArray(f.apps) ? f.apps.slice() : []
  };
  attempt = 0;
  if (state === "connected") {
    return;
  }
  state = "connected";
  sentCount = 0;
  flush();
  Thywill.emit("stateChange", state);
  if (state === "connected") {
    Thywill.emit("connected");
  }
}
var streams = /* @__PURE__ */ new Map();
var heldCount = 0;
function isStreamMessage(f) {
  return typeof f.stream === "string" && f.stream !== "" && typeof f.epoch === "string" && f.epoch !== "" && isCount(f.off, 1);
}
function deliverMessage(st, f) {
  if (f.t === "skip") {
    return;
  }
  if (typeof f.app !== "string") {
    console2.warn("thywill: message without an application ignored", f);
    return;
  }
  if (st !== null && st.apps !== null && !st.apps.has(f.app)) {
    if (st.apps.size < MAX_STREAM_APPS) {
      st.apps.add(f.app);
    } else {
      st.apps = null;
    }
  }
  Thywill.emit("received", f.app, new Message(f.data, f._));
}
function touchStream(name) {
  var st = streams.get(name);
  if (st !== void 0) {
    streams.delete(name);
    streams.set(name, st);
  }
  return st === void 0 ? null : st;
}
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
    name,
    epoch,
    last,
    held: /* @__PURE__ */ new Map(),
    mismatch: false,
    timer: null,
    asks: 0,
    lostPending: false,
    apps: /* @__PURE__ */ new Set()
  };
  streams.set(name, st);
  return st;
}
function streamMessage(f) {
  var st = touchStream(f.stream);
  if (st === null) {
    st = addStream(f.stream, f.epoch, f.off - 1);
  } else if (st.epoch === "") {
    st.epoch = f.epoch;
    st.last = f.off - 1;
    st.mismatch = false;
    if (st.lostPending) {
      st.lostPending = false;
      reportLoss(st, f.epoch, f.off);
    }
  }
  if (f.epoch !== st.epoch) {
    st.mismatch = true;
    if (st.timer === null) {
      askNow(st);
    }
    return;
  }
  if (f.off <= st.last) {
    return;
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
function drain(st) {
  var next = st.held.get(st.last + 1);
  while (next !== void 0) {
    st.held.delete(st.last + 1);
    heldCount--;
    st.last++;
    deliverMessage(st, next);
    next = st.held.get(st.last + 1);
  }
}
function flushHeld(st, below) {
  var offsets = [];
  st.held.forEach(function(frame, off) {
    if (off < below) {
      offsets.push(off);
    }
  });
  offsets.sort(function(a, b) {
    return a - b;
  });
  offsets.forEach(function(off) {
    var frame = (
      /** @type {Frame} */
      st.held.get(off)
    );
    st.held.delete(off);
    heldCount--;
    st.last = Math.max(st.last, off);
    deliverMessage(st, frame);
  });
}
function hold(st, f) {
  if (st.held.has(f.off)) {
    return;
  }
  st.held.set(f.off, f);
  heldCount++;
  if (st.held.size > MAX_HELD_PER_STREAM) {
    console2.warn("thywill: more than " + MAX_HELD_PER_STREAM + " messages of " + st.name + " wait for a gap to fill: skipping gaps");
    relieve(st);
  } else if (heldCount > MAX_HELD) {
    var largest = st;
    streams.forEach(function(other) {
      if (other.held.size > largest.held.size) {
        largest = other;
      }
    });
    console2.warn("thywill: more than " + MAX_HELD + " messages wait for gaps to fill: skipping gaps of " + largest.name);
    relieve(largest);
  }
  settle(st);
}
function relieve(st) {
  var offsets = Array.from(st.held.keys()).sort(function(a, b) {
    return a - b;
  });
  reportLoss(st, st.epoch, offsets[0]);
  flushHeld(st, offsets[Math.floor(offsets.length / 2)]);
  st.asks = 0;
  drain(st);
  settle(st);
}
function skipGap(st) {
  var first = Infinity;
  st.held.forEach(function(frame, off) {
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
function reportLoss(st, epoch, next) {
  Thywill.emit("continuityLost", {
    stream: st.name,
    epoch,
    next,
    apps: st.apps === null ? [] : Array.from(st.apps)
  });
}
function needsReplay(st) {
  return st.held.size > 0 || st.mismatch;
}
function settle(st) {
  if (!needsReplay(st)) {
    clearAsk(st);
    st.asks = 0;
  } else if (st.timer === null) {
    planAsk(st, GAP_WAIT);
  }
}
function clearAsk(st) {
  if (st.timer !== null) {
    clearTimeout(st.timer);
    st.timer = null;
  }
}
function planAsk(st, delay) {
  clearAsk(st);
  st.timer = setTimeout(function() {
    st.timer = null;
    if (streams.get(st.name) === st && needsReplay(st)) {
      askNow(st);
    }
  }, delay);
}
function askNow(st) {
  if (st.asks >= MAX_RESUME_ASKS) {
    console2.warn("thywill: the server did not replay " + st.name + " after " + st.asks + " requests: giving up");
    st.asks = 0;
    if (st.mismatch) {
      flushHeld(st, Infinity);
      st.mismatch = false;
      st.epoch = "";
      st.last = 0;
      st.lostPending = true;
    } else {
      skipGap(st);
    }
    settle(st);
    return;
  }
  var streamsAsked = {};
  streamsAsked[st.name] = { epoch: st.epoch, off: st.last };
  if (trySend(JSON.stringify({ t: "resume", streams: streamsAsked }))) {
    st.asks++;
  }
  planAsk(st, RESUME_RETRY);
}
function stopAsks() {
  streams.forEach(clearAsk);
}
function restartAsks() {
  streams.forEach(function(st) {
    st.asks = 0;
    if (needsReplay(st)) {
      planAsk(st, RESUME_RETRY);
    }
  });
}
function streamPositions() {
  var list = Array.from(streams.values());
  var positions = {};
  var chars = 0;
  var any = false;
  for (var i = list.length - 1; i >= 0; i--) {
    var st = list[i];
    if (st.epoch === "") {
      continue;
    }
    var position = { epoch: st.epoch, off: st.last };
    chars += JSON.stringify(st.name).length + JSON.stringify(position).length + 2;
    if (chars > MAX_POSITIONS_CHARS) {
      console2.warn("thywill: too many streams to name in hello; the least recently active are not replayed");
      break;
    }
    positions[st.name] = position;
    any = true;
  }
  return any ? positions : null;
}
function continuityLost(f) {
  if (typeof f.stream !== "string" || f.stream === "" || typeof f.epoch !== "string" || !isCount(f.next, 0)) {
    console2.warn("thywill: invalid continuity_lost frame ignored", f);
    return;
  }
  var next = Math.max(1, f.next);
  var st = touchStream(f.stream);
  if (st === null) {
    st = addStream(f.stream, f.epoch, next - 1);
    reportLoss(st, f.epoch, next);
  } else if (st.epoch === f.epoch) {
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
function streamSnapshot() {
  var out = {};
  streams.forEach(function(st) {
    out[st.name] = { epoch: st.epoch, off: st.last, held: st.held.size };
  });
  return out;
}
function replied(f) {
  var p = pending.get(f.id);
  if (!p) {
    return;
  }
  pending.delete(f.id);
  if (p.timer !== null) {
    clearTimeout(p.timer);
  }
  if (f.t === "rpc_ok") {
    p.resolve(f.result === void 0 ? null : f.result);
  } else {
    p.reject(new RpcError(typeof f.code === "string" ? (
      /** @type {RpcErrorCode} */
      f.code
    ) : "he", typeof f.message === "string" ? f.message : "", p.name));
  }
}
function rpcCall(appId, name, args, timeout) {
  checkAppId(appId);
  if (typeof name !== "string" || name === "") {
    throw new TypeError("thywill: an rpc function name must be a non-empty string");
  }
  if (timeout !== void 0) {
    checkDelay("timeout", timeout);
  }
  var ms = timeout === void 0 ? DEFAULT_RPC_TIMEOUT : timeout;
  return new Promise(function(resolve, reject) {
    if (state !== "connected") {
      reject(new RpcError("dc", "not connected", name));
      return;
    }
    var id = nextRpcId++;
    var text = JSON.stringify({ t: "rpc", app: appId, id, name, args: args === void 0 ? [] : args });
    if (!trySend(text)) {
      reject(new RpcError("dc", "not connected", name));
      return;
    }
    var entry = { app: appId, name, resolve, reject, timer: null };
    pending.set(id, entry);
    if (ms > 0) {
      entry.timer = setTimeout(function() {
        if (pending.get(id) === entry) {
          pending.delete(id);
          reject(new RpcError("to", "no reply within " + ms + " ms", name));
        }
      }, Math.min(MAX_TIMER, ms));
    }
  });
}
var LOAD_KINDS = ["script", "stylesheet", "template"];
var loads = /* @__PURE__ */ new Map();
function resourceUrl(path) {
  if (typeof path !== "string" || !/^\/(?!\/)/.test(path) || /[\\\u0000-\u0020\u007f]/.test(path)) {
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
  return url.origin === here.origin && url.origin !== "null" ? url : null;
}
function appendElement(el, what, url) {
  return new Promise(function(resolve, reject) {
    el.onload = function() {
      resolve(el);
    };
    el.onerror = function() {
      el.remove();
      reject(new Error("thywill: cannot load " + what + " " + url));
    };
    global.document.head.appendChild(el);
  });
}
function fetchTemplate(url, id) {
  return global.fetch(url, { credentials: "same-origin" }).then(function(response) {
    if (!response.ok) {
      throw new Error("thywill: cannot load template " + url + ": HTTP " + response.status);
    }
    var name = new URL(url).pathname.split("/").pop() || "template";
    var elementId = id || response.headers.get("x-thywill-template-id") || name.split(".")[0];
    return response.text().then(function(text) {
      var el = global.document.getElementById(elementId);
      if (el && !(el.tagName === "SCRIPT" && el.type === "text/template")) {
        console2.warn("thywill: template " + url + " refused: element #" + elementId + " exists and is not a template");
        throw new Error("thywill: cannot inline template " + url + ": #" + elementId + " is not a template");
      }
      if (!el) {
        el = global.document.createElement("script");
        el.type = "text/template";
        el.id = elementId;
        global.document.body.appendChild(el);
      }
      el.textContent = text;
      return el;
    });
  });
}
function load(kind, path, id) {
  if (LOAD_KINDS.indexOf(kind) < 0) {
    return Promise.reject(new TypeError("thywill: cannot load a " + String(kind) + ": use " + LOAD_KINDS.join(", ")));
  }
  var resolved = resourceUrl(path);
  if (resolved === null) {
    console2.warn("thywill: refused to load " + kind + " " + JSON.stringify(String(path)) + ": not a plain absolute path of this origin");
    return Promise.reject(new TypeError("thywill: a resource path must be an absolute path of this origin (/…), got " + JSON.stringify(String(path))));
  }
  if (!global.document) {
    return Promise.reject(new Error("thywill: resources can only be loaded in a page"));
  }
  var url = resolved.href;
  var key = kind + " " + url;
  var known = loads.get(key);
  if (known) {
    return known;
  }
  var started;
  if (kind === "script") {
    var el = global.document.createElement("script");
    el.src = url;
    el.async = false;
    started = appendElement(el, "script", url);
  } else if (kind === "stylesheet") {
    var link = global.document.createElement("link");
    link.rel = "stylesheet";
    link.href = url;
    started = appendElement(link, "stylesheet", url);
  } else {
    started = fetchTemplate(url, id);
  }
  var done = started.then(function(element) {
    Thywill.emit(
      "loaded",
      /** @type {LoadKind} */
      kind,
      /** @type {string} */
      path,
      element
    );
    return element;
  });
  loads.set(key, done);
  done.catch(function() {
    loads.delete(key);
  });
  return done;
}
var ThywillClient = class extends Emitter {
  /**
   * Changes settings (effective at the next connection attempt). Throws on invalid values.
   * @param {Options} options
   * @returns {this}
   */
  configure(options) {
    var o = options || {};
    var min = o.minDelay === void 0 ? config.minDelay : o.minDelay;
    var max = o.maxDelay === void 0 ? config.maxDelay : o.maxDelay;
    checkDelay("minDelay", min);
    checkDelay("maxDelay", max);
    if (min <= 0 || max < min) {
      throw new RangeError("thywill: need 0 < minDelay <= maxDelay, got " + min + " and " + max);
    }
    if (o.url !== void 0 && o.url !== null && typeof o.url !== "string") {
      throw new TypeError("thywill: url must be a string or null");
    }
    if (o.autoConnect !== void 0 && typeof o.autoConnect !== "boolean") {
      throw new TypeError("thywill: autoConnect must be a boolean");
    }
    config.minDelay = min;
    config.maxDelay = max;
    if (o.url !== void 0) {
      config.url = o.url;
    }
    if (o.autoConnect !== void 0) {
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
    if (!socket && state === "disconnected") {
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
    dropSocket(1e3, "client disconnected");
    if (state !== "disconnected") {
      session = null;
      sentCount = 0;
      stopAsks();
      failPending("dc", "disconnected by the client");
      setState("disconnected");
      Thywill.emit("disconnected", { code: 1e3, reason: "disconnect() called" });
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
    enqueue(id, JSON.stringify({ t: "msg", app: applicationId, data: m.data, _: m._, id }));
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
    return load("script", path);
  }
  /**
   * Loads a stylesheet once; resolves with its `<link>` when it applies.
   * @param {string} path
   * @returns {Promise<HTMLLinkElement>}
   */
  loadStylesheet(path) {
    return load("stylesheet", path);
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
    return load("template", path, id);
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
    return state === "connected";
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
};
var Thywill = (
  /** @type {any} */
  new ThywillClient()
);
var INTERNAL = /* @__PURE__ */ Symbol("thywill.applicationInterface");
function internals(app) {
  return (
    /** @type {any} */
    app[INTERNAL]
  );
}
function deliver(app, event, args) {
  var own = internals(app);
  if (own.destroyed) {
    return;
  }
  if (EVENTS.indexOf(event) >= 0) {
    own.announced = true;
  }
  var hooks = (
    /** @type {Record<string, unknown>} */
    /** @type {unknown} */
    app
  );
  if (typeof hooks[event] === "function") {
    callSafely(
      /** @type {Function} */
      hooks[event],
      app,
      args,
      event + "() hook"
    );
  }
  app.emit(event, ...args);
}
function appCall(app, name, args, timeout) {
  if (internals(app).destroyed) {
    return Promise.reject(new RpcError("dc", "the application interface was destroyed", name));
  }
  return rpcCall(app.applicationId, name, args, timeout);
}
var ApplicationInterface = class extends Emitter {
  /**
   * Subscribes to the connection's events. Throws a TypeError for an empty id.
   * @param {string} applicationId
   */
  constructor(applicationId) {
    super();
    checkAppId(applicationId);
    this.applicationId = applicationId;
    this.rpcTimeout = DEFAULT_RPC_TIMEOUT;
    var self = this;
    var own = {
      destroyed: false,
      announced: false,
      listeners: {}
    };
    Object.defineProperty(this, INTERNAL, { value: own });
    EVENTS.forEach(function(event) {
      own.listeners[event] = function() {
        deliver(self, event, Array.prototype.slice.call(arguments));
      };
    });
    own.listeners.received = function(appId, message) {
      if (appId === self.applicationId) {
        deliver(self, "received", [message]);
      }
    };
    own.listeners.serverError = function(frame) {
      if (frame && frame.app === self.applicationId) {
        deliver(self, "serverError", [frame]);
      }
    };
    own.listeners.continuityLost = function(info) {
      var apps = info && Array.isArray(info.apps) ? info.apps : [];
      if (apps.length === 0 || apps.indexOf(self.applicationId) >= 0) {
        deliver(self, "continuityLost", [info]);
      }
    };
    Object.keys(own.listeners).forEach(function(event) {
      Thywill.on(event, own.listeners[event]);
    });
    Promise.resolve().then(function() {
      if (own.announced || own.destroyed) {
        return;
      }
      if (state === "connected") {
        deliver(self, "connected", []);
      } else if (state === "connecting") {
        deliver(self, "connecting", []);
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
      if (callback !== void 0 && typeof callback !== "function") {
        throw new TypeError("thywill: the rpc callback must be a function");
      }
      var done = appCall(this, call.name, call.args, call.timeout === void 0 ? this.rpcTimeout : call.timeout);
      done.then(function(result) {
        if (callback) {
          callSafely(callback, null, [null, result], "rpc callback");
        }
      }, function(error) {
        if (callback) {
          callSafely(callback, null, [error && error.code ? error.code : "he", void 0, error], "rpc callback");
        }
      });
      return void 0;
    }
    var timeout = options && options.timeout !== void 0 ? options.timeout : this.rpcTimeout;
    return appCall(this, nameOrCall, argsOrCallback, timeout);
  }
  /**
   * Sets the default RPC timeout in milliseconds (0 waits forever).
   * @param {number} ms
   * @returns {this}
   */
  setRpcTimeout(ms) {
    checkDelay("rpc timeout", ms);
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
    Object.keys(own.listeners).forEach(function(event) {
      Thywill.off(event, own.listeners[event]);
    });
  }
  // Overridable hooks; the defaults do nothing.
  /**
   * Hook: a message for this application arrived.
   * @param {Message} message
   * @returns {void}
   */
  received(message) {
  }
  /**
   * Hook: the connection is up.
   * @returns {void}
   */
  connected() {
  }
  /**
   * Hook: a connection attempt started.
   * @returns {void}
   */
  connecting() {
  }
  /**
   * Hook: an established connection ended.
   * @param {CloseInfo} info
   * @returns {void}
   */
  disconnected(info) {
  }
  /**
   * Hook: a connection attempt failed before the welcome frame.
   * @param {CloseInfo} info
   * @returns {void}
   */
  connectionFailure(info) {
  }
  /**
   * Hook: the server reported an error about this application (a message it refused).
   * @param {ServerErrorFrame} frame
   * @returns {void}
   */
  serverError(frame) {
  }
  /**
   * Hook: messages of a stream this application received messages of were lost for good.
   * @param {ContinuityLostInfo} info
   * @returns {void}
   */
  continuityLost(info) {
  }
};
var classes = (
  /** @type {any} */
  Thywill
);
classes.Emitter = Emitter;
classes.Message = Message;
classes.RpcError = RpcError;
classes.ApplicationInterface = ApplicationInterface;
classes.protocolVersion = PROTOCOL_VERSION;
function autoConnect() {
  autoConnectDue = true;
  if (config.autoConnect && !controlled) {
    Thywill.connect();
  }
}
if (global.document && global.document.readyState === "loading") {
  global.document.addEventListener("DOMContentLoaded", autoConnect, { once: true });
} else {
  setTimeout(autoConnect, 0);
}
if (typeof global.addEventListener === "function") {
  global.addEventListener("online", function() {
    if (wanted && retryTimer !== null) {
      open();
    }
  });
}
export {
  ApplicationInterface,
  Emitter,
  Message,
  RpcError,
  Thywill,
  ThywillClient
};
