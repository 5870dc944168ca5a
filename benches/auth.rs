//! Auth benches: being written.
fn main() {}
