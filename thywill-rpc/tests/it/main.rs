//! Integration tests of thywill-rpc: real nodes on loopback ports, real WebSocket clients.

mod calls;
mod context;
mod failures;
mod fixture;
mod lifecycle;
mod wrapper;
