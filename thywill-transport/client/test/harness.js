// Test harness: loads thywill.js in a vm context with a fake window, WebSocket and a virtual
// clock (timers run only when a test advances it), so the client's logic is tested without a
// browser or a server. Run by `cargo nextest` (thywill-transport, test `client_js`).
'use strict';
const vm = require('vm');
const fs = require('fs');
const path = require('path');
const SRC = fs.readFileSync(path.join(__dirname, '..', 'thywill.js'), 'utf8');

// A minimal DOM for resource loading: elements appended to head/body are recorded, ids are
// looked up with getElementById, and script/link loads complete when a test calls `el.onload()`.
function fakeDocument() {
  const all = [];
  class FakeElement {
    constructor(tag) { this.tagName = tag.toUpperCase(); this.type = ''; this.id = ''; this.textContent = ''; this.parent = null; }
    getAttribute() { return null; }
    remove() { if (this.parent) { this.parent.children.splice(this.parent.children.indexOf(this), 1); this.parent = null; } }
  }
  function container() {
    return { children: [], appendChild(el) { el.parent = this; this.children.push(el); all.push(el); return el; } };
  }
  const doc = {
    readyState: 'complete',
    currentScript: null,
    head: container(),
    body: container(),
    createElement: (tag) => new FakeElement(tag),
    getElementById: (id) => [...doc.head.children, ...doc.body.children].find(e => e.id === id) || null,
    addEventListener() {},
    appended: all,
  };
  return doc;
}

function load(opts) {
  opts = opts || {};
  let now = 0;
  let timers = [];
  let nextTimer = 1;
  const logs = { warn: [], error: [] };
  const sockets = [];
  class FakeWS {
    constructor(url) { this.url = url; this.readyState = 0; this.sent = []; this.sentAt = []; sockets.push(this); }
    send(t) { if (this.readyState !== 1) throw new Error('not open'); this.sent.push(JSON.parse(t)); this.sentAt.push(now); }
    close() { this.readyState = 3; }
    // test helpers
    open() { this.readyState = 1; this.onopen && this.onopen({}); }
    recv(f) { this.onmessage({ data: typeof f === 'string' ? f : JSON.stringify(f) }); }
    drop(code) { this.readyState = 3; this.onclose({ code: code || 1006, reason: '' }); }
    frames(t) { return this.sent.filter(f => !t || f.t === t); }
  }
  const win = {
    console: {
      log: console.log,
      warn: (...a) => logs.warn.push(a.map(String).join(' ')),
      error: (...a) => { logs.error.push(a.map(String).join(' ')); console.log('ERROR', ...a); },
    },
    location: { protocol: 'http:', host: 'h', origin: 'http://h', href: 'http://h/chat/' },
    WebSocket: FakeWS,
    crypto: require('crypto').webcrypto,
    setTimeout: (fn, ms) => { const id = nextTimer++; timers.push({ id, at: now + (ms || 0), fn }); return id; },
    clearTimeout: (id) => { timers = timers.filter(t => t.id !== id); },
    URL, Promise, Symbol, Map, Set, Uint8Array, JSON, Math, Array, Object, Number, Error, TypeError, RangeError,
  };
  if (opts.document) {
    win.document = fakeDocument();
    // fetch answers from `opts.files` (path -> {body, headers}); anything else is a 404.
    win.fetched = [];
    win.fetch = (url) => {
      win.fetched.push(url);
      const file = (opts.files || {})[new URL(url).pathname];
      const headers = (file && file.headers) || {};
      return Promise.resolve({
        ok: !!file, status: file ? 200 : 404,
        headers: { get: (n) => (n.toLowerCase() in headers ? headers[n.toLowerCase()] : null) },
        text: () => Promise.resolve(file ? file.body : ''),
      });
    };
  }
  win.window = win;
  const ctx = vm.createContext(win);
  vm.runInContext(SRC, ctx, { filename: 'thywill.js' });
  function advance(ms) {
    const end = now + ms;
    for (;;) {
      timers.sort((a, b) => a.at - b.at || a.id - b.id);
      const t = timers[0];
      if (!t || t.at > end) break;
      timers.shift();
      now = t.at;
      t.fn();
    }
    now = end;
  }
  return { T: win.Thywill, win, sockets, logs, advance, get timers() { return timers; }, get now() { return now; } };
}
module.exports = { load, fakeDocument };
