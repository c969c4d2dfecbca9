//! The checks behind thywill-rs's fuzz targets, as plain functions.
//!
//! Each target under `fuzz_targets/` is one line that hands libFuzzer's input to a function
//! here, which panics when a property of the project's code does not hold (libFuzzer then
//! saves the input under `fuzz/artifacts/<target>/`). The same functions run as ordinary
//! unit tests over the committed seed inputs in `seeds/<target>/`:
//! `cargo test --manifest-path fuzz/Cargo.toml`.
//!
//! - [`envelope::check`]: the wire-protocol decoder (`ClientFrame::decode`,
//!   `ServerFrame::decode`) never panics, honours its size limit, and whatever it accepts
//!   re-encodes to text that decodes to an equal frame.
//! - [`rpc_request::check`]: an RPC request, from a decoded `rpc` frame or from raw JSON
//!   arguments, sent through `RpcHandler::call` to a registry with functions of several
//!   parameter shapes, never panics and answers exactly what the registry documents: a
//!   result, or an error with one of the stable codes.
//! - [`node::check`]: a real node, in process, driven by several client connections with
//!   arbitrary sequences of frames (`hello`, `resume`, `msg`, `rpc`, malformed text, pings,
//!   closes); nothing panics, what it writes is well-formed, and once the clients are gone
//!   no connection is left in the node, the tracker or any channel's presence, and the
//!   history stays within its bound.
//!
//! Run them with `cargo xtask fuzz [--secs N] [TARGET…]`.

pub mod envelope;
pub mod json;
pub mod node;
pub mod rpc_request;

/// The frame size limit the transport applies by default (64 KiB).
pub const FRAME_LIMIT: usize = 64 * 1024;

/// libFuzzer's input as text: as is when it is UTF-8 (WebSocket text frames always are),
/// otherwise with the invalid sequences replaced, so that every input reaches the decoders.
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// The seed inputs of one target (`seeds/<target>/*`), sorted by name.
    fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        let seeds: Vec<(PathBuf, Vec<u8>)> = files
            .into_iter()
            .filter_map(|p| std::fs::read(&p).ok().map(|data| (p, data)))
            .collect();
        assert!(seeds.len() >= 5, "too few seeds in {}", dir.display());
        seeds
    }

    #[test]
    fn envelope_seeds_pass() {
        for (path, data) in seeds("envelope") {
            eprintln!("{}", path.display());
            super::envelope::check(&data);
        }
    }

    #[test]
    fn rpc_request_seeds_pass() {
        for (path, data) in seeds("rpc_request") {
            eprintln!("{}", path.display());
            super::rpc_request::check(&data);
        }
    }

    #[test]
    fn node_seeds_pass() {
        for (path, data) in seeds("node") {
            eprintln!("{}", path.display());
            super::node::check(&data);
        }
    }

    #[test]
    fn every_seed_of_one_target_is_valid_input_for_the_other() {
        for (_, data) in seeds("rpc_request") {
            super::envelope::check(&data);
        }
        for (_, data) in seeds("envelope") {
            super::rpc_request::check(&data);
        }
    }
}
