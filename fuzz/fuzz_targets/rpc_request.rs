//! Fuzz target `rpc_request`: RPC requests through the registry (see `thywill_fuzz::rpc_request`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| thywill_fuzz::rpc_request::check(data));
