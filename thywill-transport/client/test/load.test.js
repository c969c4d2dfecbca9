// Unit tests of thywill.js's resource loading (`load` frames and `Thywill.load`): only plain
// absolute paths of the page's own origin become <script>, <link> or template fetches; hostile
// paths that the URL parser would turn into another host (`/\evil`, `/<tab>/evil`, ...) are
// refused, logged and emit nothing. Also: a template never overwrites an element that is not a
// template. Run by `cargo nextest` (thywill-transport, test `client_load`); exits non-zero on
// the first failure.
'use strict';
const assert = require('assert');
const { load } = require('./harness');

const WELCOME = { t: 'welcome', v: 1, connection: 'c1', session: 's1', member: 'alpha', apps: ['chat'] };
const KINDS = ['script', 'stylesheet', 'template'];

// Paths that must never be loaded. The page is http://h/chat/.
const HOSTILE = [
  '//evil.example/a.js',
  '/\\evil.example/b.js',
  '/\t/evil.example/c.js',
  '/\n/evil.example/c.js',
  '/\r/evil.example/c.js',
  '/\t\n\r/evil.example/c.js',
  '/\u000b/evil.example/c.js',
  '/\u000c/evil.example/c.js',
  '/ /evil.example/c.js',
  '/\u0000x',
  '/x\u007f.js',
  '/x/\\..\\y.js',
  '\\\\evil.example/d.js',
  '\\/evil.example/d.js',
  '\t//evil.example/e.js',
  ' /x.js',
  'javascript:alert(1)',
  'data:text/javascript,alert(1)',
  'https://evil.example/f.js',
  'http://h/same-origin-but-not-a-path.js',
  'x.js',
  '../x.js',
  '',
  42,
  null,
  undefined,
  { toString: () => '/x.js' },
];
// Plain absolute paths and the URL each must load.
const GOOD = [
  ['/chat/js/a.js', 'http://h/chat/js/a.js'],
  ['/%5cevil.example/b.js', 'http://h/%5cevil.example/b.js'],
  ['/%2f%2fevil.example/b.js', 'http://h/%2f%2fevil.example/b.js'],
  ['/a/../b.js', 'http://h/b.js'],
  ['/c.js?v=1#frag', 'http://h/c.js?v=1#frag'],
  ['/caf\u00e9.css', 'http://h/caf%C3%A9.css'],
];

const tests = [];
function test(name, fn) { tests.push([name, fn]); }

function page() {
  const h = load({ document: true, files: { '/t/main.html': { body: '<p>{{x}}</p>' }, '/t/row.html': { body: 'row' } } });
  const loaded = [];
  h.T.on('loaded', (kind, path) => loaded.push([kind, path]));
  h.advance(1); // autoConnect
  const ws = h.sockets[h.sockets.length - 1];
  ws.open();
  ws.recv(WELCOME);
  h.logs.warn.length = 0; // "cannot locate thywill.js" (no script tag in the fake page)
  return Object.assign(h, { ws, loaded, doc: h.win.document });
}

const flush = () => new Promise((r) => setImmediate(r));

test('load frames with hostile paths add nothing, emit nothing and are logged', async () => {
  for (const kind of KINDS) {
    for (const path of HOSTILE) {
      const h = page();
      h.ws.recv({ t: 'load', kind, path });
      await flush();
      const what = kind + ' ' + JSON.stringify(path);
      assert.deepStrictEqual(h.doc.appended.map((e) => e.src || e.href), [], what + ' added an element');
      assert.deepStrictEqual(h.win.fetched, [], what + ' was fetched');
      assert.deepStrictEqual(h.loaded, [], what + ' emitted loaded');
      assert.strictEqual(h.logs.warn.length, 1, what + ' not logged once: ' + JSON.stringify(h.logs.warn));
      assert.match(h.logs.warn[0], /refused/, what);
      assert.strictEqual(h.T.state, 'connected', what + ' broke the connection');
    }
  }
});

test('Thywill.load with hostile paths rejects, adds nothing and logs', async () => {
  for (const kind of KINDS) {
    for (const path of HOSTILE) {
      const h = page();
      const what = kind + ' ' + JSON.stringify(path);
      await assert.rejects(h.T.load(kind, path), TypeError, what);
      assert.deepStrictEqual(h.doc.appended.map((e) => e.src || e.href), [], what + ' added an element');
      assert.deepStrictEqual(h.win.fetched, [], what + ' was fetched');
      assert.deepStrictEqual(h.loaded, [], what + ' emitted loaded');
      assert.ok(h.logs.warn.length >= 1, what + ' not logged');
    }
  }
});

test('load frames with plain absolute paths load scripts and stylesheets of this origin', async () => {
  for (const [path, url] of GOOD) {
    const h = page();
    h.ws.recv({ t: 'load', kind: 'script', path });
    h.ws.recv({ t: 'load', kind: 'stylesheet', path });
    h.ws.recv({ t: 'load', kind: 'script', path }); // the same again: loaded once
    const [script, link] = h.doc.head.children;
    assert.strictEqual(h.doc.head.children.length, 2, path);
    assert.strictEqual(script.tagName, 'SCRIPT');
    assert.strictEqual(script.src, url);
    assert.strictEqual(link.tagName, 'LINK');
    assert.strictEqual(link.rel, 'stylesheet');
    assert.strictEqual(link.href, url);
    script.onload();
    link.onload();
    await flush();
    assert.deepStrictEqual(h.loaded, [['script', path], ['stylesheet', path]]);
    assert.deepStrictEqual(h.logs.warn, []);
  }
});

test('templates: fetched from this origin, inlined as text, never over another element', async () => {
  const h = page();
  const el = await h.T.loadTemplate('/t/main.html');
  assert.deepStrictEqual(h.win.fetched, ['http://h/t/main.html']);
  assert.strictEqual(el.tagName, 'SCRIPT');
  assert.strictEqual(el.type, 'text/template');
  assert.strictEqual(el.id, 'main');
  assert.strictEqual(el.textContent, '<p>{{x}}</p>');
  assert.strictEqual(el.parent, h.doc.body);
  // An element of the page with the id a template would take is left alone.
  const div = h.doc.createElement('div');
  div.id = 'row';
  div.textContent = 'page content';
  h.doc.body.appendChild(div);
  const inline = h.doc.createElement('script');
  inline.id = 'boot';
  h.doc.body.appendChild(inline);
  await assert.rejects(h.T.loadTemplate('/t/row.html'), /not a template/);
  assert.strictEqual(div.textContent, 'page content');
  await assert.rejects(h.T.loadTemplate('/t/row.html', 'boot'), /not a template/);
  assert.strictEqual(inline.textContent, '');
  // An existing template of that id is replaced.
  const again = await h.T.loadTemplate('/t/row.html', 'main');
  assert.strictEqual(again, el);
  assert.strictEqual(el.textContent, 'row');
});

(async () => {
  let failed = 0;
  for (const [name, fn] of tests) {
    try { await fn(); console.log('ok  ', name); } catch (e) { failed++; console.log('FAIL', name, '\n', e); }
  }
  console.log(failed ? failed + ' failed' : 'all passed');
  process.exit(failed ? 1 : 0);
})();
