// Sample usage of the thywill.js declarations; compiled (never run) to check thywill.d.ts:
//   npx -y -p typescript@5 tsc -p thywill-transport/client/check
//   npx -y -p typescript@5 tsc --noEmit --strict thywill-transport/client/check/usage.ts
// Lines marked @ts-expect-error must fail to type-check.
/// <reference lib="es2018" />
/// <reference lib="dom" />
/// <reference path="../thywill.d.ts" />

// Global augmentation of the RPC map (this file is a script, so a top-level interface merges).
interface ThywillRpcFunctions {
  'powers.square': { args: [number]; result: number };
  'text.reverse': { args: { text: string }; result: string };
}

// An application's own RPC map.
interface CalcRpc {
  'calc.add': { args: [number, number]; result: number };
}

Thywill.configure({ minDelay: 500, maxDelay: 20000, autoConnect: true, url: null }).connect();

const state: Thywill.State = Thywill.state;
const connected: boolean = Thywill.isConnected;
const ids: (string | null)[] = [Thywill.connectionId, Thywill.sessionId, Thywill.member];
const apps: string[] = Thywill.applications;
console.log(state, connected, ids, apps, Thywill.buffered, Thywill.url, Thywill.basePath, Thywill.protocolVersion);

Thywill.on('stateChange', (s) => console.log(s.toUpperCase()))
  .on('connected', () => console.log('up'))
  .on('disconnected', (info) => console.log(info.code, info.reason))
  .on('connectionFailure', (info) => console.log(info.code))
  .on('received', (app, message) => console.log(app.length, message.getData(), message.getMetadata('x')))
  .on('serverError', (frame) => console.log(frame.code, frame.message, frame.app));
Thywill.once('connecting', () => undefined);
// @ts-expect-error: `received` listeners get (applicationId: string, message)
Thywill.on('received', (app: number) => console.log(app));
// @ts-expect-error: `stateChange` listeners get a state, not a number
Thywill.on('stateChange', (s: number) => s);
Thywill.on('somethingElse', (...args: unknown[]) => args);

const message = new Thywill.Message({ a: 1 }, { type: 'greeting' });
message.setMetadata('k', 'v').setMetadata('n', 1);
const a: number = message.getData().a;
const meta: Thywill.Metadata = message.getMetadata();
const id: number = Thywill.send('echo', message) + Thywill.send('echo', 'text');
console.log(a, meta, id, JSON.stringify(message.toJSON()));
const typed: string | undefined = message.setType('greeting').clearMetadata('k').getType();
const replaced: Thywill.Message<string[]> = message.setMetadata({ type: 'other' }).setData(['x']);
const plainMessage: { data: string[]; _: Thywill.Metadata } = replaced.toObject();
console.log(typed, plainMessage.data.length, replaced.toString());
// @ts-expect-error: metadata keys are strings
message.setMetadata(5, 'x');

// A subclass with hooks.
class EchoInterface extends Thywill.ApplicationInterface {
  private readonly seen: string[] = [];

  constructor() {
    super('echo');
    this.rpcTimeout = 5000;
  }

  received(message: Thywill.Message): void {
    this.seen.push(String(message.data));
  }

  connected(): void {
    this.send('hello');
  }

  disconnected(info: Thywill.CloseInfo): void {
    console.log(info.code, this.seen.length);
  }
}

async function rpcs(): Promise<void> {
  const echo = new EchoInterface();
  echo.on('received', (m) => console.log(m.data)).on('connected', () => undefined);
  echo.on('disconnected', (info) => console.log(info.reason));
  // @ts-expect-error: `received` listeners get a Message
  echo.on('received', (m: string) => m);

  // Typed by the global map.
  const nine: number = await echo.rpc('powers.square', [3], { timeout: 1000 });
  const reversed: string = await echo.rpc('text.reverse', { text: 'abc' });
  // @ts-expect-error: wrong argument type for a listed function
  await echo.rpc('powers.square', ['3']);
  // @ts-expect-error: a listed function needs its arguments
  await echo.rpc('powers.square');
  // @ts-expect-error: the result is a number
  const wrong: string = await echo.rpc('powers.square', [3]);

  // Untyped calls of unlisted functions.
  const anything: unknown = await echo.rpc('not.listed');
  const typed = await echo.rpc<{ ok: boolean }>('other.fn', [1, 2]);
  const ok: boolean = typed.ok;

  // An interface with its own map.
  const calc = new Thywill.ApplicationInterface<CalcRpc>('calculations');
  calc.setRpcTimeout(2000);
  const sum: number = await calc.rpc('calc.add', [1, 2]);
  // @ts-expect-error: two numbers
  await calc.rpc('calc.add', [1]);

  // Callback form.
  calc.rpc({ name: 'calc.add', args: [1, 2] }, (error, result, detail) => {
    if (error === null) {
      const n: number | undefined = result;
      console.log(n);
    } else {
      const code: Thywill.RpcErrorCode = error;
      console.log(code, detail?.message);
    }
  });
  // @ts-expect-error: wrong arguments in the callback form
  calc.rpc({ name: 'calc.add', args: ['x'] }, () => undefined);
  calc.rpc({ name: 'unlisted', args: { any: 'thing' }, timeout: 0 });

  // Errors.
  try {
    await Thywill.rpc<number>('calculations', 'calc.add', [1, 2]);
  } catch (e) {
    if (e instanceof Thywill.RpcError) {
      const code: Thywill.RpcErrorCode = e.code;
      console.log(code, e.message, e.functionName);
    }
  }

  calc.destroy();
  console.log(nine, reversed, wrong, anything, ok, sum);
}

// A generic emitter subclass with its own events.
class Ticker extends Thywill.Emitter<{ tick: (n: number) => void }> {
  start(): void {
    this.emit('tick', 1);
    // @ts-expect-error: tick takes a number
    this.emit('tick', 'one');
  }
}
new Ticker().on('tick', (n) => console.log(n + 1)).start();

// Resources on demand (progressive exposure).
async function loads(): Promise<void> {
  const script: HTMLScriptElement = await Thywill.loadScript('/app/js/extra.js');
  const link: HTMLLinkElement = await Thywill.loadStylesheet('/app/css/extra.css');
  const tpl: HTMLScriptElement = await Thywill.loadTemplate('/app/tpl/row.tpl', 'app-row');
  const any: HTMLElement = await Thywill.load('template', '/app/tpl/other.tpl');
  // @ts-expect-error: not a kind of resource
  await Thywill.load('image', '/app/x.png');
  Thywill.on('loaded', (kind, path, element) => console.log(kind.toUpperCase(), path.length, element.tagName));
  console.log(script.src, link.href, tpl.id, any.id);
}

void rpcs();
void loads();
Thywill.disconnect();
