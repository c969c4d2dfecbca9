//! Integration tests of the transport: real nodes on loopback ports, real WebSocket clients.

mod cluster;
mod support;

mod caches;
mod channel_events;
mod channels;
mod client_build;
mod client_js;
mod client_load;
mod connection;
mod delivery;
mod errors;
mod hostile;
mod lifecycle;
mod presence;
mod replay;
mod session_data;
mod sessions;
mod stores;
mod tasks;
mod tls;
