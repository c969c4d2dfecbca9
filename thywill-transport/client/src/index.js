// @ts-check
// The package's entry point: `import { Thywill, ApplicationInterface } from 'thywill-client'`.
export { ApplicationInterface, Thywill, ThywillClient } from './client.js';
export { Emitter } from './emitter.js';
export { Message, RpcError } from './message.js';
export * from './types.js';
