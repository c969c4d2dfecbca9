//! Integration tests of the node runtime, served by its edge: several nodes clustered in this
//! process through the in-memory hub (channels, presence, tasks, caches, replay across
//! members), and delivery and session data on one node; real WebSocket clients throughout.

mod cluster;
mod support;

mod caches;
mod channel_events;
mod channels;
mod connection_state;
mod delivery;
mod interest;
mod presence;
mod replay;
mod session_data;
mod tasks;
