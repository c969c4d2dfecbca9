#!/bin/sh
# rustdoc as docs.rs runs it, for `cargo xtask lint`'s docs.rs build: docs.rs uses a nightly
# toolchain, where `#![feature(doc_cfg)]` (behind `--cfg docsrs`) is allowed; this machine
# has a stable one, so RUSTC_BOOTSTRAP=1 allows it here, for rustdoc only (set through
# RUSTDOC=this script, so the dependencies' rustc builds are untouched).
RUSTC_BOOTSTRAP=1 exec rustdoc "$@"
