export { Emitter } from "./emitter.js";
export * from "./types.js";
export { ApplicationInterface, Thywill, ThywillClient } from "./client.js";
export { Message, RpcError } from "./message.js";
