//! The `courier` command-line client: argument parsing (`args.rs`), the
//! config file (`config.rs`), output formats (`output.rs`) and the commands
//! (`commands.rs`). All network work goes through `courier_tools`.

pub mod args;
pub mod commands;
pub mod config;
pub mod output;
