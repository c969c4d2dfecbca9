// Unit tests of thywill.js: recovery after reconnects (stream order, duplicates, gaps and
// `resume`, `skip`, epochs, `continuity_lost`), acknowledgements and resends. Exits non-zero
// on the first failure.
'use strict';
const assert = require('assert');
const { load } = require('./harness');

const WELCOME = { t: 'welcome', v: 1, connection: 'c1', session: 's1', member: 'alpha', apps: ['chat', 'draw'] };
function m(stream, epoch, off, data, app) { return { t: 'msg', app: app || 'chat', seq: 1, data, _: {}, stream, epoch, off }; }
const tests = [];
function test(name, fn) { tests.push([name, fn]); }

function connected() {
  const h = load();
  const got = [];
  const lost = [];
  h.T.on('received', (app, msg) => got.push(msg.data));
  h.T.on('continuityLost', (i) => lost.push(i));
  h.advance(1); // autoConnect
  const ws = h.sockets[h.sockets.length - 1];
  ws.open();
  ws.recv(WELCOME);
  return Object.assign(h, { ws, got, lost });
}
function reconnect(h) {
  h.ws.drop(1006);
  h.advance(20000);
  h.ws = h.sockets[h.sockets.length - 1];
  h.ws.open();
  const hello = h.ws.frames('hello')[0];
  h.ws.recv(WELCOME);
  return hello;
}

test('tab id and hello', () => {
  const h = connected();
  assert.match(h.T.tab, /^[0-9a-f]{16}$/);
  const hello = h.ws.frames('hello')[0];
  assert.deepStrictEqual(hello, { t: 'hello', v: 1, tab: h.T.tab });
  assert.strictEqual(h.T.state, 'connected');
  const h2 = load();
  assert.notStrictEqual(h2.T.tab, h.T.tab);
});

test('in order, duplicates, gap fill, hello positions', () => {
  const h = connected();
  h.ws.recv(m('c:x', 'E', 5, 'a'));       // baseline
  h.ws.recv(m('c:x', 'E', 5, 'a-dup'));   // dup
  h.ws.recv(m('c:x', 'E', 7, 'c'));       // gap
  h.ws.recv(m('c:x', 'E', 6, 'b'));       // fills
  h.ws.recv({ t: 'msg', app: 'chat', seq: 9, data: 'plain', _: {} });
  assert.deepStrictEqual(h.got, ['a', 'c' === 'x' ? '' : 'b', 'c', 'plain'].filter(Boolean));
  h.advance(5000);
  assert.strictEqual(h.ws.frames('resume').length, 0);
  assert.deepStrictEqual(JSON.parse(JSON.stringify(h.T.streams)), { 'c:x': { epoch: 'E', off: 7, held: 0 } });
  const hello = reconnect(h);
  assert.deepStrictEqual(hello.streams, { 'c:x': { epoch: 'E', off: 7 } });
  assert.strictEqual(hello.tab, h.T.tab);
});

test('gap resume after 250 ms, re-ask every 1 s, replay fills', () => {
  const h = connected();
  h.ws.recv(m('c:x', 'E', 1, 1));
  h.ws.recv(m('c:x', 'E', 4, 4));
  h.ws.recv(m('c:x', 'E', 5, 5));
  assert.deepStrictEqual(h.got, [1]);
  h.advance(249);
  assert.strictEqual(h.ws.frames('resume').length, 0);
  h.advance(1);
  assert.deepStrictEqual(h.ws.frames('resume'), [{ t: 'resume', streams: { 'c:x': { epoch: 'E', off: 1 } } }]);
  h.advance(1000);
  assert.strictEqual(h.ws.frames('resume').length, 2);
  h.ws.recv(m('c:x', 'E', 2, 2));
  h.ws.recv(m('c:x', 'E', 3, 3));
  h.ws.recv(m('c:x', 'E', 4, 4)); // replay duplicates
  h.ws.recv(m('c:x', 'E', 5, 5));
  assert.deepStrictEqual(h.got, [1, 2, 3, 4, 5]);
  h.advance(10000);
  assert.strictEqual(h.ws.frames('resume').length, 2);
  assert.strictEqual(h.timers.length, 0);
});

test('epoch change: drop, resume now, continuity_lost then replay', () => {
  const h = connected();
  h.ws.recv(m('c:x', 'E', 1, 1));
  h.ws.recv(m('c:x', 'F', 3, 'f3'));
  assert.deepStrictEqual(h.got, [1]);
  assert.deepStrictEqual(h.ws.frames('resume'), [{ t: 'resume', streams: { 'c:x': { epoch: 'E', off: 1 } } }]);
  h.ws.recv(m('c:x', 'F', 4, 'f4')); // no second immediate ask
  assert.strictEqual(h.ws.frames('resume').length, 1);
  h.ws.recv({ t: 'continuity_lost', stream: 'c:x', epoch: 'F', next: 2 });
  h.ws.recv(m('c:x', 'F', 2, 'f2'));
  h.ws.recv(m('c:x', 'F', 3, 'f3'));
  h.ws.recv(m('c:x', 'F', 4, 'f4'));
  assert.deepStrictEqual(h.got, [1, 'f2', 'f3', 'f4']);
  assert.deepStrictEqual(JSON.parse(JSON.stringify(h.lost)), [{ stream: 'c:x', epoch: 'F', next: 2, apps: ['chat'] }]);
  h.advance(10000);
  assert.strictEqual(h.ws.frames('resume').length, 1);
});

test('continuity_lost same epoch: held below next delivered, loss reported, rest follows', () => {
  const h = connected();
  h.ws.recv(m('c:x', 'E', 1, 1));
  h.ws.recv(m('c:x', 'E', 3, 3));
  h.ws.recv(m('c:x', 'E', 7, 7));
  h.ws.recv({ t: 'continuity_lost', stream: 'c:x', epoch: 'E', next: 5 });
  assert.deepStrictEqual(h.got, [1, 3]);
  assert.strictEqual(h.lost.length, 1);
  h.ws.recv(m('c:x', 'E', 5, 5));
  h.ws.recv(m('c:x', 'E', 6, 6));
  assert.deepStrictEqual(h.got, [1, 3, 5, 6, 7]);
  // a stale continuity_lost (nothing missing any more) is not reported
  h.ws.recv({ t: 'continuity_lost', stream: 'c:x', epoch: 'E', next: 6 });
  assert.strictEqual(h.lost.length, 1);
  assert.deepStrictEqual(JSON.parse(JSON.stringify(h.T.streams['c:x'])), { epoch: 'E', off: 7, held: 0 });
});

test('continuity_lost epoch "" (other member stream): next message is baseline; not in hello', () => {
  const h = connected();
  h.ws.recv(m('c:x@alpha', 'E', 10, 10));
  const hello = reconnect(h);
  assert.deepStrictEqual(hello.streams, { 'c:x@alpha': { epoch: 'E', off: 10 } });
  h.ws.recv({ t: 'continuity_lost', stream: 'c:x@alpha', epoch: '', next: 1 });
  assert.strictEqual(h.lost.length, 1);
  h.ws.recv(m('c:x@alpha', 'G', 40, 40));
  assert.deepStrictEqual(h.got, [10, 40]);
  assert.strictEqual(h.lost.length, 1);
  const hello2 = reconnect(h);
  assert.deepStrictEqual(hello2.streams, { 'c:x@alpha': { epoch: 'G', off: 40 } });
  h.ws.drop();
  h.advance(20000);
  h.ws = h.sockets[h.sockets.length - 1];
  h.ws.open(); h.ws.recv(WELCOME);
  h.ws.recv({ t: 'continuity_lost', stream: 'c:x@alpha', epoch: '', next: 1 });
  const hello3 = reconnect(h);
  assert.strictEqual(hello3.streams, undefined);
});

test('skip frames take offsets', () => {
  const h = connected();
  h.ws.recv(m('c:x', 'E', 1, 1));
  h.ws.recv({ t: 'skip', stream: 'c:x', epoch: 'E', off: 3 });
  h.ws.recv({ t: 'skip', stream: 'c:x', epoch: 'E', off: 2 });
  h.ws.recv(m('c:x', 'E', 4, 4));
  assert.deepStrictEqual(h.got, [1, 4]);
  h.advance(5000);
  assert.strictEqual(h.ws.frames('resume').length, 0);
});

test('give up after 10 unanswered asks: gap skipped and reported', () => {
  const h = connected();
  h.ws.recv(m('c:x', 'E', 1, 1));
  h.ws.recv(m('c:x', 'E', 3, 3));
  h.advance(250 + 9 * 1000);
  assert.strictEqual(h.ws.frames('resume').length, 10);
  assert.deepStrictEqual(h.got, [1]);
  h.advance(1000);
  assert.deepStrictEqual(h.got, [1, 3]);
  assert.deepStrictEqual(h.lost.map(l => l.next), [3]);
  assert.ok(h.logs.warn.some(w => /giving up/.test(w)));
  h.advance(10000);
  assert.strictEqual(h.timers.length, 0);
});

test('give up on epoch mismatch: next message is baseline and reported', () => {
  const h = connected();
  h.ws.recv(m('c:x', 'E', 1, 1));
  h.ws.recv(m('c:x', 'F', 9, 'f9'));
  h.advance(10 * 1000);
  assert.strictEqual(h.ws.frames('resume').length, 10);
  h.advance(1000);
  h.ws.recv(m('c:x', 'F', 12, 'f12'));
  assert.deepStrictEqual(h.got, [1, 'f12']);
  assert.deepStrictEqual(JSON.parse(JSON.stringify(h.lost)), [{ stream: 'c:x', epoch: 'F', next: 12, apps: ['chat'] }]);
});

test('held bound per stream', () => {
  const h = connected();
  h.ws.recv(m('c:x', 'E', 1, 1));
  for (let i = 3; i <= 10002; i++) h.ws.recv(m('c:x', 'E', i, i));
  assert.strictEqual(h.got.length, 1);
  h.ws.recv(m('c:x', 'E', 10003, 10003));
  assert.strictEqual(h.got.length, 10002);
  assert.strictEqual(h.lost.length, 1);
  assert.strictEqual(h.lost[0].next, 3);
  assert.strictEqual(h.T.streams['c:x'].held, 0);
});

test('stream count bound and hello size', () => {
  const h = connected();
  for (let i = 0; i < 300; i++) h.ws.recv(m('c:' + i, 'E', 1, i));
  assert.strictEqual(Object.keys(h.T.streams).length, 256);
  assert.ok(!('c:0' in h.T.streams) && 'c:299' in h.T.streams);
  const hello = reconnect(h);
  assert.strictEqual(Object.keys(hello.streams).length, 256);
  const h2 = connected();
  const long = 'x'.repeat(500);
  for (let i = 0; i < 100; i++) h2.ws.recv(m('c:' + long + i, 'E', 1, i));
  const hello2 = reconnect(h2);
  assert.ok(JSON.stringify(hello2).length < 40000);
  assert.ok('c:' + long + '99' in hello2.streams);
});

test('acks, resend unacked then buffered after welcome, bounded', () => {
  const h = connected();
  const id1 = h.T.send('chat', 'one');
  const id2 = h.T.send('chat', 'two');
  const id3 = h.T.send('chat', 'three');
  assert.deepStrictEqual(h.ws.frames('msg').map(f => f.id), [id1, id2, id3]);
  assert.strictEqual(h.T.unacknowledged, 3);
  h.ws.recv({ t: 'ack', id: id1 });
  assert.strictEqual(h.T.unacknowledged, 2);
  h.ws.drop(1006);
  const id4 = h.T.send('chat', 'four');
  assert.strictEqual(h.T.buffered, 3);
  h.advance(20000);
  h.ws = h.sockets[h.sockets.length - 1];
  h.ws.open();
  assert.strictEqual(h.ws.frames('msg').length, 0); // nothing before welcome
  let order = [];
  h.T.once('connected', () => { order = h.ws.frames('msg').map(f => f.id); h.T.send('chat', 'five'); });
  h.ws.recv(WELCOME);
  assert.deepStrictEqual(order, [id2, id3, id4]);
  assert.deepStrictEqual(h.ws.frames('msg').map(f => f.data), ['two', 'three', 'four', 'five']);
  h.ws.recv({ t: 'ack', id: 100 });
  assert.strictEqual(h.T.unacknowledged, 0);
  assert.strictEqual(h.T.buffered, 0);
  // bound
  h.ws.drop(1006);
  for (let i = 0; i < 1005; i++) h.T.send('chat', i);
  assert.strictEqual(h.T.buffered, 1000);
  assert.ok(h.logs.warn.some(w => /dropped/.test(w)));
  h.advance(20000);
  h.ws = h.sockets[h.sockets.length - 1];
  h.ws.open(); h.ws.recv(WELCOME);
  const d = h.ws.frames('msg').map(f => f.data);
  assert.strictEqual(d.length, 1000); assert.strictEqual(d[0], 5); assert.strictEqual(d[999], 1004);
});

test('ack while connected keeps later sends in order; rpc not buffered', async () => {
  const h = connected();
  h.ws.drop(1006);
  let err = null;
  await h.T.rpc('chat', 'f').catch(e => { err = e; });
  assert.strictEqual(err.code, 'dc');
});

test('application interfaces get continuityLost for their apps', async () => {
  const h = connected();
  const chatLost = [], drawLost = [], hook = [];
  class Chat extends h.T.ApplicationInterface { continuityLost(i) { hook.push(i.stream); } }
  const chat = new Chat('chat');
  const draw = new h.T.ApplicationInterface('draw');
  chat.on('continuityLost', i => chatLost.push(i.stream));
  draw.on('continuityLost', i => drawLost.push(i.stream));
  await Promise.resolve();
  h.ws.recv(m('c:x', 'E', 1, 1, 'chat'));
  h.ws.recv(m('c:y', 'E', 1, 1, 'draw'));
  h.ws.recv({ t: 'continuity_lost', stream: 'c:x', epoch: 'F', next: 1 });
  h.ws.recv({ t: 'continuity_lost', stream: 'c:y', epoch: 'F', next: 1 });
  h.ws.recv({ t: 'continuity_lost', stream: 'c:unknown', epoch: 'F', next: 3 });
  assert.deepStrictEqual(chatLost, ['c:x', 'c:unknown']);
  assert.deepStrictEqual(hook, ['c:x', 'c:unknown']);
  assert.deepStrictEqual(drawLost, ['c:y', 'c:unknown']);
});

test('malformed frames only warn', () => {
  const h = connected();
  h.ws.recv({ t: 'ack', id: 'x' });
  h.ws.recv({ t: 'continuity_lost', stream: 1 });
  h.ws.recv({ t: 'skip', stream: 'c:x' });
  h.ws.recv({ t: 'msg', app: 'chat', data: 'e', _: {}, stream: 'c:z', epoch: '', off: 3 }); // delivered as is
  h.ws.recv({ t: 'msg', data: 'noapp', _: {}, stream: 'c:z', epoch: 'E', off: 1 });
  h.ws.recv(m('c:z', 'E', 2, 'two'));
  assert.deepStrictEqual(h.got, ['e', 'two']);
  assert.strictEqual(h.logs.error.length, 0);
});

test('gap timers stop while disconnected and restart after hello', () => {
  const h = connected();
  h.ws.recv(m('c:x', 'E', 1, 1));
  h.ws.recv(m('c:x', 'E', 3, 3));
  h.ws.drop(1006);
  h.advance(1); // retry timer only
  const pendingBefore = h.timers.length;
  assert.strictEqual(pendingBefore, 1);
  h.advance(20000);
  h.ws = h.sockets[h.sockets.length - 1];
  h.ws.open();
  assert.deepStrictEqual(h.ws.frames('hello')[0].streams, { 'c:x': { epoch: 'E', off: 1 } });
  h.ws.recv(WELCOME);
  h.advance(999);
  assert.strictEqual(h.ws.frames('resume').length, 0);
  h.ws.recv(m('c:x', 'E', 2, 2));
  assert.deepStrictEqual(h.got, [1, 2, 3]);
  h.advance(5000);
  assert.strictEqual(h.ws.frames('resume').length, 0);
});

test('alternating gaps overflow is cheap and bounded', () => {
  const h = connected();
  h.ws.recv(m('c:x', 'E', 1, 1));
  const t0 = Date.now();
  for (let i = 3; i <= 60001; i += 2) h.ws.recv(m('c:x', 'E', i, i));
  assert.ok(Date.now() - t0 < 3000, 'took ' + (Date.now() - t0));
  assert.ok(h.T.streams['c:x'].held <= 10000);
  const got = h.got.slice(1);
  for (let i = 1; i < got.length; i++) assert.ok(got[i] > got[i - 1]);
  assert.ok(h.lost.length > 0 && h.lost.length < 20, 'reports ' + h.lost.length);
});

test('total held bound across streams', () => {
  const h = connected();
  for (const s of ['a', 'b', 'c']) h.ws.recv(m(s, 'E', 1, 1));
  for (let i = 3; i < 9003; i++) { h.ws.recv(m('a', 'E', i, i)); h.ws.recv(m('b', 'E', i, i)); }
  for (let i = 3; i < 2100; i++) h.ws.recv(m('c', 'E', i, i));
  const total = Object.values(h.T.streams).reduce((n, s) => n + s.held, 0);
  assert.ok(total <= 20000, total);
  assert.ok(h.lost.length >= 1);
});

test('live message before replay after reconnect', () => {
  const h = connected();
  h.ws.recv(m('c:x', 'E', 1, 1));
  h.ws.drop(1006);
  h.advance(20000);
  h.ws = h.sockets[h.sockets.length - 1];
  h.ws.open();
  h.ws.recv(WELCOME);
  h.ws.recv(m('c:x', 'E', 5, 5)); // live first
  h.advance(200);
  h.ws.recv(m('c:x', 'E', 2, 2));
  h.ws.recv(m('c:x', 'E', 3, 3));
  h.ws.recv(m('c:x', 'E', 4, 4));
  h.ws.recv(m('c:x', 'E', 5, 5)); // replayed dup
  h.ws.recv(m('c:x', 'E', 6, 6));
  assert.deepStrictEqual(h.got, [1, 2, 3, 4, 5, 6]);
  h.advance(5000);
  assert.strictEqual(h.ws.frames('resume').length, 0);
});

test('throwing listeners do not break ordering', () => {
  const h = connected();
  h.T.on('received', () => { throw new Error('boom'); });
  h.ws.recv(m('c:x', 'E', 1, 1));
  h.ws.recv(m('c:x', 'E', 3, 3));
  h.ws.recv(m('c:x', 'E', 2, 2));
  assert.deepStrictEqual(h.got, [1, 2, 3]);
  assert.strictEqual(h.logs.error.length, 3);
  h.logs.error.length = 0;
});

test('disconnect() and connect() resend unacknowledged', () => {
  const h = connected();
  h.T.send('chat', 'a');
  h.T.disconnect();
  assert.strictEqual(h.T.buffered, 1);
  h.T.connect();
  h.ws = h.sockets[h.sockets.length - 1];
  h.ws.open(); h.ws.recv(WELCOME);
  assert.deepStrictEqual(h.ws.frames('msg').map(f => f.data), ['a']);
});

(async () => {
  let failed = 0;
  for (const [name, fn] of tests) {
    try { await fn(); console.log('ok  ', name); } catch (e) { failed++; console.log('FAIL', name, '\n', e); }
  }
  console.log(failed ? failed + ' failed' : 'all passed');
  process.exit(failed ? 1 : 0);
})();
