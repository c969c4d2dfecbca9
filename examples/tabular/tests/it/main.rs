//! Integration tests of the Tabular example: the stream of rows and its timer over a real
//! WebSocket, the page's resources over HTTP (bundles, ETag and 304, caching, compression),
//! progressive exposure, and start-up failures on broken scripts and styles.

mod fixture;
mod resources;
mod startup;
mod stream;
