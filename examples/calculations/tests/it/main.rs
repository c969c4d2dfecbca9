//! Integration tests of the Calculations example: its page, its functions over a real
//! WebSocket, and the TypeScript declarations of the functions checked by `tsc`.

mod fixture;
mod page;
mod rpc;
mod typescript;
