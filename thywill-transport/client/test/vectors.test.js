// Runs the shared recovery vectors (client/vectors/recovery.json) against thywill.js: frames
// in at virtual times, deliveries, loss reports and frames out expected exactly. The Rust
// test client runs the same file (thywill-testkit, reliable.rs). Exits non-zero on the first
// difference of any vector.
'use strict';
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { load } = require('./harness');

const FILE = path.join(__dirname, '..', 'vectors', 'recovery.json');
const WELCOME = { t: 'welcome', v: 1, connection: 'c1', session: 's1', member: 'alpha', apps: ['chat', 'draw'] };

/** The frames a socket sent from index `from` on, as the vectors write them. */
function sentSince(ws, from, t0) {
  const out = [];
  for (let i = from; i < ws.sent.length; i++) {
    const f = ws.sent[i];
    const at = ws.sentAt[i] - t0;
    if (f.t === 'resume') {
      for (const stream of Object.keys(f.streams).sort()) {
        out.push({ at, resume: { stream, epoch: f.streams[stream].epoch, off: f.streams[stream].off } });
      }
    } else if (f.t === 'hello') {
      out.push({ at, hello: f.streams || {} });
    } else {
      out.push({ at, other: f });
    }
  }
  return out;
}

function run(vector) {
  const h = load();
  const events = [];
  h.T.on('received', (app, message) => events.push({ deliver: { app, data: message.data } }));
  h.T.on('continuityLost', (i) => events.push({ lost: { stream: i.stream, epoch: i.epoch, next: i.next } }));
  h.advance(1); // the automatic connect
  let ws = h.sockets[h.sockets.length - 1];
  ws.open();
  ws.recv(WELCOME);
  const t0 = h.now;
  let dropped = null;
  vector.steps.forEach((step, n) => {
    const where = `${vector.name}: step ${n} (${JSON.stringify(step)})`;
    assert.ok(t0 + step.at >= h.now, where + ': time goes back');
    events.length = 0;
    const before = ws.sent.length;
    h.advance(t0 + step.at - h.now);
    let sent = sentSince(ws, before, t0);
    if (step.frame) {
      ws.recv(step.frame);
      sent = sentSince(ws, before, t0);
    } else if (step.drop) {
      ws.drop(1006);
      dropped = ws;
    } else if (step.connect) {
      assert.ok(dropped, where + ': connect while connected');
      if (h.sockets[h.sockets.length - 1] === dropped) {
        h.T.connect(); // the retry timer has not fired yet: connect now
      }
      ws = h.sockets[h.sockets.length - 1];
      ws.open();
      ws.recv(WELCOME);
      dropped = null;
      sent = sent.concat(sentSince(ws, 0, t0));
    }
    assert.deepStrictEqual(JSON.parse(JSON.stringify(events)), step.events || [], where + ': events');
    assert.deepStrictEqual(sent, step.sent || [], where + ': frames sent');
    if (step.streams) {
      assert.deepStrictEqual(JSON.parse(JSON.stringify(h.T.streams)), step.streams, where + ': stream positions');
    }
  });
  assert.strictEqual(h.logs.error.length, 0, vector.name + ': errors logged: ' + h.logs.error.join('; '));
}

const { vectors } = JSON.parse(fs.readFileSync(FILE, 'utf8'));
let failed = 0;
for (const vector of vectors) {
  try {
    run(vector);
    console.log('ok  ', vector.name);
  } catch (e) {
    failed++;
    console.log('FAIL', vector.name, '\n', e.message);
  }
}
assert.ok(vectors.length >= 10, 'the vectors file holds ' + vectors.length + ' vectors');
console.log(failed ? failed + ' failed' : 'all passed (' + vectors.length + ' vectors)');
process.exit(failed ? 1 : 0);
