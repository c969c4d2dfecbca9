//! Integration tests of the transport: real nodes on loopback ports, real WebSocket clients.

mod cluster;
mod support;

mod channels;
mod client_js;
mod client_load;
mod delivery;
mod errors;
mod hostile;
mod lifecycle;
mod presence;
mod replay;
mod sessions;
mod tasks;
mod tls;
