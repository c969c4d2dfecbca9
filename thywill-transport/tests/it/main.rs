//! Integration tests of the edge: a node served on loopback ports, real WebSocket clients,
//! hostile sockets, TLS, the browser client. (What the node routes across members is tested
//! in `thywill-node`.)

mod support;

mod auth;
mod client_build;
mod client_js;
mod client_load;
mod connection;
mod errors;
mod hostile;
mod lifecycle;
mod service;
mod sessions;
mod stores;
mod tls;
