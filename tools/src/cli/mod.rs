//! The `courier` command-line client: argument parsing (`args.rs`), the
//! config file (`config.rs`), output formats (`output.rs`), the commands
//! (`commands.rs`), the people commands (`people.rs`), the invite commands (`invites.rs`), the thread commands (`threads.rs`), pins, typing and presence (`around.rs`) and the offline WAL tools (`wal.rs`). All network work goes through `courier_tools`.

pub mod args;
pub mod around;
pub mod commands;
pub mod config;
pub mod invites;
pub mod output;
pub mod people;
pub mod threads;
pub mod wal;
