// Unit tests of thywill.js's Message helpers (the original thywill's: setData/getData,
// getType/setType, metadata get/set/clear, toObject), and of what a message looks like on the
// wire when sent and when received. Exits non-zero on the first failure.
'use strict';
const assert = require('assert');
const { load } = require('./harness');

const WELCOME = { t: 'welcome', v: 1, connection: 'c1', session: 's1', member: 'alpha', apps: ['chat'] };
const tests = [];
function test(name, fn) { tests.push([name, fn]); }
// Objects made inside the page's vm context have that context's prototypes: compare as JSON.
const plain = (v) => JSON.parse(JSON.stringify(v));

function connected() {
  const h = load();
  h.advance(1); // autoConnect
  const ws = h.sockets[h.sockets.length - 1];
  ws.open();
  ws.recv(WELCOME);
  return Object.assign(h, { ws });
}

test('data: constructor, getData, setData', () => {
  const { T } = load();
  const m = new T.Message({ a: 1 });
  assert.deepStrictEqual(plain(m.getData()), { a: 1 });
  assert.strictEqual(new T.Message().getData(), null, 'no data is null');
  assert.strictEqual(m.setData('text'), m, 'setData chains');
  assert.strictEqual(m.getData(), 'text');
  assert.strictEqual(m.data, 'text');
  m.setData(undefined);
  assert.strictEqual(m.getData(), null, 'undefined data is null');
  m.setData(0);
  assert.strictEqual(m.getData(), 0, 'falsy data is kept');
});

test('metadata: get, set one, set all, clear', () => {
  const { T } = load();
  const m = new T.Message('x', { a: 1 });
  assert.deepStrictEqual(plain(m.getMetadata()), { a: 1 });
  assert.strictEqual(m.getMetadata('a'), 1);
  assert.strictEqual(m.getMetadata('missing'), undefined);
  assert.strictEqual(m.setMetadata('b', 'two').setMetadata('c', [3]), m, 'setMetadata chains');
  assert.deepStrictEqual(plain(m.getMetadata()), { a: 1, b: 'two', c: [3] });
  m.setMetadata('a', undefined);
  assert.deepStrictEqual(plain(m.getMetadata()), { b: 'two', c: [3] }, 'undefined removes a key');
  const replacement = { only: true };
  m.setMetadata(replacement);
  assert.deepStrictEqual(plain(m.getMetadata()), { only: true }, 'an object replaces the metadata');
  m.setMetadata('more', 1);
  assert.deepStrictEqual(replacement, { only: true }, 'the object given is copied, not kept');
  m.clearMetadata('only');
  assert.deepStrictEqual(plain(m.getMetadata()), { more: 1 });
  assert.strictEqual(m.clearMetadata(), m);
  assert.deepStrictEqual(plain(m.getMetadata()), {});
  assert.throws(() => m.setMetadata(5, 'x'), TypeError);
  assert.deepStrictEqual(plain(new T.Message('x', [1, 2]).getMetadata()), {}, 'non-object metadata is {}');
});

test('type: getType and setType are the `type` metadata value', () => {
  const { T } = load();
  const m = new T.Message('x');
  assert.strictEqual(m.getType(), undefined);
  assert.strictEqual(m.setType('greeting'), m);
  assert.strictEqual(m.getType(), 'greeting');
  assert.strictEqual(m.getMetadata('type'), 'greeting');
  assert.strictEqual(new T.Message('x', { type: 'given' }).getType(), 'given');
  m.setType(null);
  assert.strictEqual(m.getType(), undefined);
  assert.deepStrictEqual(plain(m.getMetadata()), {}, 'setType(null) removes the key');
});

test('toObject, toJSON and toString', () => {
  const { T } = load();
  const m = new T.Message({ n: [1, 2] }, { type: 't' });
  const o = m.toObject();
  assert.deepStrictEqual(plain(o), { data: { n: [1, 2] }, _: { type: 't' } });
  o._.type = 'changed';
  assert.strictEqual(m.getType(), 't', 'toObject copies the metadata object');
  assert.deepStrictEqual(JSON.parse(m.toString()), { data: { n: [1, 2] }, _: { type: 't' } });
  assert.strictEqual(JSON.stringify(m), m.toString());
});

test('a message built with the helpers goes out as {data, _}', () => {
  const h = connected();
  const m = new h.T.Message().setData({ text: 'hi' }).setType('greeting').setMetadata('k', 1);
  h.T.send('chat', m);
  const [frame] = h.ws.frames('msg');
  assert.deepStrictEqual(plain(frame.data), { text: 'hi' });
  assert.deepStrictEqual(plain(frame._), { type: 'greeting', k: 1 });
});

test('a received message has the helpers', () => {
  const h = connected();
  const got = [];
  h.T.on('received', (app, message) => got.push(message));
  h.ws.recv({ t: 'msg', app: 'chat', seq: 1, data: { v: 2 }, _: { type: 'reply' } });
  assert.strictEqual(got.length, 1);
  assert.ok(got[0] instanceof h.T.Message);
  assert.strictEqual(got[0].getType(), 'reply');
  assert.deepStrictEqual(plain(got[0].getData()), { v: 2 });
  assert.deepStrictEqual(plain(got[0].toObject()), { data: { v: 2 }, _: { type: 'reply' } });
});

test('loaded twice, the classic script keeps the first client and its socket', () => {
  const h = connected();
  const first = h.T;
  h.T.send('chat', 'before');
  const src = require('fs').readFileSync(require('path').join(__dirname, '..', 'thywill.js'), 'utf8');
  require('vm').runInContext(src, h.win, { filename: 'thywill.js (again)' });
  assert.strictEqual(h.win.Thywill, first);
  h.advance(1000);
  assert.strictEqual(h.sockets.length, 1);
  assert.strictEqual(h.win.Thywill.state, 'connected');
  assert.strictEqual(h.win.Thywill.protocolVersion, 1);
  assert.strictEqual(typeof h.win.Thywill.Message, 'function');
});

(async () => {
  let failed = 0;
  for (const [name, fn] of tests) {
    try { await fn(); console.log('ok  ', name); } catch (e) { failed++; console.log('FAIL', name, '\n', e); }
  }
  console.log(failed ? failed + ' failed' : 'all passed');
  process.exit(failed ? 1 : 0);
})();
