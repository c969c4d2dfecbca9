//! Fuzz target `envelope`: the wire-protocol decoder (see `thywill_fuzz::envelope`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| thywill_fuzz::envelope::check(data));
