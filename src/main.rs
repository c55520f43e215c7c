//! The `settee` command.
fn main() {}
