// Sample usage of the package's declarations (dist/), as a bundled front end imports it;
// compiled (never run) by build.mjs. Lines marked @ts-expect-error must fail to type-check.
import {
  ApplicationInterface,
  Message,
  RpcError,
  Thywill,
  type CloseInfo,
  type ContinuityLostInfo,
  type State,
} from '../dist/index.js';

declare global {
  interface ThywillRpcFunctions {
    'powers.square': { args: [number]; result: number };
  }
}

interface CalcRpc {
  'calc.add': { args: [number, number]; result: number };
}

Thywill.configure({ url: '/echo/ws', minDelay: 500 }).connect();
const state: State = Thywill.state;
Thywill.on('received', (app, message) => console.log(app.length, message.getData()));
Thywill.on('continuityLost', (info: ContinuityLostInfo) => console.log(info.stream, info.next));
// @ts-expect-error: `received` listeners get (applicationId: string, message)
Thywill.on('received', (app: number) => app);

class Echo extends ApplicationInterface<CalcRpc> {
  received(message: Message): void {
    console.log(message.data);
  }
  disconnected(info: CloseInfo): void {
    console.log(info.code);
  }
}

async function calls(): Promise<void> {
  const echo = new Echo('echo');
  echo.send(new Message('hello', { type: 'greeting' }));
  const sum: number = await echo.rpc('calc.add', [1, 2]);
  // @ts-expect-error: two numbers
  await echo.rpc('calc.add', ['1']);
  const square: number = await new ApplicationInterface('calculations').rpc('powers.square', [3]);
  try {
    await Thywill.rpc<number>('calculations', 'calc.add', [1, 2]);
  } catch (e) {
    if (e instanceof RpcError) {
      console.log(e.code, e.functionName);
    }
  }
  // The classes are also on the client, as on the classic script's global.
  const same: typeof Message = Thywill.Message;
  console.log(state, sum, square, same === Message, Thywill.protocolVersion);
}

void calls();
