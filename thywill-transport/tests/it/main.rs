//! Integration tests of the transport: real nodes on loopback ports, real WebSocket clients.

mod support;

mod delivery;
mod errors;
mod lifecycle;
mod sessions;
mod tls;
