//! Fuzz target `node`: a real node driven by several connections (see `thywill_fuzz::node`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| thywill_fuzz::node::check(data));
