//! Project automation (placeholder; see the README).
fn main() {}
