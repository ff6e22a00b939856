//! The `downpour` command.
fn main() {}
