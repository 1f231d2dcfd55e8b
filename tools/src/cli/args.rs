//! The command line of `courier`: global options and every subcommand, as
//! clap derive types. Parsing only; `commands.rs` runs them.

use super::invites::InviteCommand;
use super::people::{DirectoryArgs, MembersArgs, ProfileCommand, UsersCommand};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Courier command-line client: administer a server, chat, and watch
/// conversations with no gaps and no duplicates.
#[derive(Parser, Debug)]
#[command(
    name = "courier",
    version,
    propagate_version = true,
    after_help = "Exit codes: 0 ok, 1 the server rejected the request (or another failure), \
                  2 usage error, 3 cannot reach the server.\n\
                  Server and token come from --server/--token, then COURIER_SERVER/COURIER_TOKEN, \
                  then the file written by `courier login`."
)]
pub struct Cli {
    /// Server URL, e.g. ws://127.0.0.1:7070 [default: ws://127.0.0.1:7070].
    /// Several, comma-separated (the nodes of a cluster): the client stays
    /// on one that works and fails over to the next.
    #[arg(long, env = "COURIER_SERVER", global = true, value_name = "URL[,URL…]")]
    pub server: Option<String>,
    /// Token: a user token (cu1_…) or the admin token (ca1_…).
    #[arg(
        long,
        env = "COURIER_TOKEN",
        global = true,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Print one JSON object per line (stable field names) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to keep retrying a command while the server is unreachable.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 10)]
    pub timeout: u64,
    /// Config file [default: $XDG_CONFIG_HOME/courier/config.toml].
    #[arg(long, env = "COURIER_CONFIG", global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum Command {
    /// Store --server and --token in the config file (mode 0600).
    Login {
        /// Do not check the token against the server first.
        #[arg(long)]
        offline: bool,
    },
    /// Show who the token belongs to.
    Whoami,
    /// Administration (needs the admin token from DATA_DIR/admin.token).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Channels.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Open (or find) the direct conversation with one user, or a group DM
    /// with up to seven; prints its conversation id.
    Dm {
        /// Users (names or ids).
        #[arg(required = true, num_args = 1..=7, value_name = "USER")]
        users: Vec<String>,
    },
    /// Send a message; prints its seq.
    Send {
        /// Conversation: channel name or id, or @user for a DM.
        #[arg(value_name = "CONV")]
        conversation: String,
        /// The message text.
        text: String,
    },
    /// Replace the text of one of your messages (an admin: anyone's),
    /// within the server's edit window; prints the edit's own seq.
    Edit {
        /// Conversation: channel name or id, or @user for a DM.
        #[arg(value_name = "CONV")]
        conversation: String,
        /// The message's seq.
        seq: u64,
        /// The new text.
        text: String,
    },
    /// Delete one of your messages (an admin: anyone's); its text is gone
    /// for every device. Prints the delete's own seq.
    Delete {
        /// Conversation: channel name or id, or @user for a DM.
        #[arg(value_name = "CONV")]
        conversation: String,
        /// The message's seq.
        seq: u64,
    },
    /// React to a message with an emoji (a short name like `+1`, or the
    /// emoji itself); --remove takes your reaction back.
    React {
        /// Conversation: channel name or id, or @user for a DM.
        #[arg(value_name = "CONV")]
        conversation: String,
        /// The message's seq.
        seq: u64,
        /// The emoji.
        emoji: String,
        /// Remove your reaction instead.
        #[arg(long)]
        remove: bool,
    },
    /// Reply in the thread of message ROOT_SEQ (issue 17, part 2); prints
    /// the reply's seq. --also-channel shows it in the channel too.
    Reply {
        /// Conversation: channel name or id, or @user for a DM.
        #[arg(value_name = "CONV")]
        conversation: String,
        /// The seq of the thread's root message.
        #[arg(value_name = "ROOT_SEQ")]
        root: u64,
        /// The reply text.
        text: String,
        /// Also show the reply in the channel.
        #[arg(long)]
        also_channel: bool,
    },
    /// Print a thread: its root message, then its replies (oldest first).
    Thread {
        /// Conversation: channel name or id, or @user for a DM.
        #[arg(value_name = "CONV")]
        conversation: String,
        /// The seq of the thread's root message.
        #[arg(value_name = "ROOT_SEQ")]
        root: u64,
        /// At most this many replies.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Pin a message to its conversation (any member may; at most 100
    /// pinned per conversation). Prints the pin's own seq.
    Pin {
        /// Conversation: channel name or id, or @user for a DM.
        #[arg(value_name = "CONV")]
        conversation: String,
        /// The message's seq.
        seq: u64,
    },
    /// Unpin a pinned message. Prints the unpin's own seq.
    Unpin {
        /// Conversation: channel name or id, or @user for a DM.
        #[arg(value_name = "CONV")]
        conversation: String,
        /// The message's seq.
        seq: u64,
    },
    /// List a conversation's pinned messages, newest first.
    Pins {
        /// Conversation: channel name or id, or @user for a DM.
        #[arg(value_name = "CONV")]
        conversation: String,
    },
    /// Tell a conversation's other members you are typing (they see it for
    /// a few seconds; at most one per 2 s per conversation is passed on).
    Typing {
        /// Conversation: channel name or id, or @user for a DM.
        #[arg(value_name = "CONV")]
        conversation: String,
    },
    /// Show users' presence (active / away); --watch keeps printing
    /// every change until interrupted.
    Presence {
        /// Users (names or ids), at most 500.
        #[arg(required = true, num_args = 1..=500, value_name = "USER")]
        users: Vec<String>,
        /// Keep printing changes.
        #[arg(long)]
        watch: bool,
    },
    /// Set yourself away by hand (`on`), or back (`off`).
    Away {
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Stream every new message of your conversations (or of those named),
    /// surviving server restarts and network drops with no gap and no
    /// duplicate.
    Watch(WatchArgs),
    /// Print a page of a conversation's history (oldest first).
    History {
        /// Conversation: channel name or id, or @user for a DM.
        #[arg(value_name = "CONV")]
        conversation: String,
        /// Only messages with seq < SEQ.
        #[arg(long, value_name = "SEQ", conflicts_with = "after")]
        before: Option<u64>,
        /// Only messages with seq > SEQ.
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// At most N messages.
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: u32,
    },
    /// List conversations with unread messages or mentions.
    Unread,
    /// Offline tools for a data directory (the daemon need not run).
    #[command(subcommand)]
    Wal(WalCommand),
    /// Your own tokens (one per device).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Workspace invites: create, redeem (no token needed), list, revoke.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Mark a conversation read up to SEQ (default: everything); every
    /// device of yours sees it.
    Read {
        /// Conversation: channel name or id, or @user for a DM.
        #[arg(value_name = "CONV")]
        conversation: String,
        /// Highest read seq.
        seq: Option<u64>,
    },
    /// Users' profiles.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Change your profile (or, with the admin token, anyone's).
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// The workspace's users sorted by name; --prefix searches handles and
    /// display names.
    Directory(DirectoryArgs),
    /// Members of a conversation (ids, or names with --profiles).
    Members(MembersArgs),
}

/// `courier watch` options.
#[derive(Args, Debug, PartialEq, Eq)]
pub struct WatchArgs {
    /// Only these conversations (channel names or ids, @user for DMs).
    #[arg(value_name = "CONV")]
    pub conversations: Vec<String>,
    /// First print all history that can be seen, then new messages.
    #[arg(long)]
    pub from_start: bool,
    /// Keep cursors in this file and resume from it on the next start.
    #[arg(long, value_name = "PATH")]
    pub cursor_file: Option<PathBuf>,
}

/// `courier wal …`.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum WalCommand {
    /// Segments, record counts, LSN ranges, per-kind counts and snapshots of
    /// every shard's log.
    Inspect {
        /// A courierd data directory (or one shard-K directory).
        #[arg(value_name = "DATA_DIR")]
        dir: PathBuf,
    },
    /// Check every record; exit 1 and name the file and offset if the log
    /// is corrupt (a torn tail, which recovery repairs, is reported but
    /// passes).
    Verify {
        /// A courierd data directory (or one shard-K directory).
        #[arg(value_name = "DATA_DIR")]
        dir: PathBuf,
    },
}

/// `courier admin …`.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum AdminCommand {
    /// Create a workspace; prints its id.
    CreateWorkspace {
        /// Display name.
        name: String,
    },
    /// Create a user; prints its id and first token. Needs the admin token
    /// or a user with the admin (or owner) role.
    CreateUser {
        /// Workspace id.
        #[arg(long, value_name = "ID")]
        workspace: u64,
        /// User name, unique in the workspace.
        name: String,
        /// Workspace role: owner, admin, member (the default) or guest. Set
        /// before the token is printed, so nobody uses the user as a member
        /// first.
        #[arg(long, value_name = "ROLE", value_parser = parse_role)]
        role: Option<RoleArg>,
        /// Display name (checked before the user is created, set right
        /// after it, before the token is printed).
        #[arg(long, value_name = "NAME")]
        display_name: Option<String>,
    },
    /// Change a user's workspace role (owner, admin, member, guest).
    SetRole {
        /// User: id, name or @name (names need a user token).
        #[arg(value_name = "USER")]
        user: String,
        /// owner, admin, member or guest.
        #[arg(value_name = "ROLE", value_parser = parse_role)]
        role: RoleArg,
    },
    /// Deactivate a user: revokes their tokens, closes their sessions at
    /// once, removes them from every channel; their messages stay. Final.
    Deactivate {
        /// User: id, name or @name (names need a user token).
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Issue another token for a user; prints it.
    IssueToken {
        /// User id.
        #[arg(value_name = "USER")]
        user: u64,
    },
    /// Revoke one token of a user, or all of them.
    RevokeToken {
        /// User id.
        #[arg(value_name = "USER")]
        user: u64,
        /// Token id (all of the user's tokens if omitted).
        #[arg(value_name = "TOKEN_ID")]
        token_id: Option<u64>,
    },
    /// The cluster (cluster-mode servers).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Copy the server's data into DIR while it keeps serving (single-node
    /// mode). DIR is a path on the server's machine, absent or empty;
    /// `courierd --data-dir DIR` starts from it.
    Backup {
        /// Target directory (made absolute here).
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

/// A role named on the command line (`Role` from the core, which has no
/// clap derive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleArg(pub courier_core::api::Role);

pub(crate) fn parse_role(s: &str) -> Result<RoleArg, String> {
    use courier_core::api::Role;
    match s {
        "owner" => Ok(RoleArg(Role::Owner)),
        "admin" => Ok(RoleArg(Role::Admin)),
        "member" => Ok(RoleArg(Role::Member)),
        "guest" => Ok(RoleArg(Role::Guest)),
        _ => Err(format!(
            "{s:?} is not a role: owner, admin, member or guest (`courier admin deactivate` deactivates)"
        )),
    }
}

/// `courier token …`.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum TokenCommand {
    /// The ids of your tokens; the one in use is marked.
    List,
    /// Revoke one of your tokens (sessions using it are closed at once).
    Revoke {
        /// Token id (from `token list`).
        #[arg(value_name = "TOKEN_ID")]
        token_id: u64,
    },
}

/// `courier admin cluster …`.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum ClusterCommand {
    /// Nodes (alive, addresses, controller) and shards (replicas, epoch;
    /// leader, term and commit lag once replication exists), as the server
    /// asked sees them. A single-node server says it is not a cluster.
    Status,
}

/// `courier channel …`.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum ChannelCommand {
    /// Create a channel (you join it).
    Create {
        /// Channel name.
        name: String,
        /// Invitation only.
        #[arg(long)]
        private: bool,
    },
    /// Join a public channel.
    Join {
        /// Channel name or id.
        #[arg(value_name = "CH")]
        channel: String,
    },
    /// Add a user to a channel you are in.
    Invite {
        /// Channel name or id.
        #[arg(value_name = "CH")]
        channel: String,
        /// User name or id.
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Leave a channel.
    Leave {
        /// Channel name or id.
        #[arg(value_name = "CH")]
        channel: String,
    },
    /// List public channels and your conversations.
    List,
    /// Every public channel of the workspace by name (paged from the
    /// server; `list` shows at most 1,000 of them).
    Browse {
        /// At most this many channels.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        limit: u32,
    },
    /// Set the channel's topic (empty text clears it); members may.
    Topic {
        /// Channel name or id.
        #[arg(value_name = "CH")]
        channel: String,
        /// The topic (at most 250 bytes).
        #[arg(value_name = "TEXT", default_value = "")]
        text: String,
    },
    /// Set the channel's purpose (empty text clears it); members may.
    Purpose {
        /// Channel name or id.
        #[arg(value_name = "CH")]
        channel: String,
        /// The purpose (at most 250 bytes).
        #[arg(value_name = "TEXT", default_value = "")]
        text: String,
    },
    /// Rename the channel (workspace admins and the channel's creator).
    Rename {
        /// Channel name or id.
        #[arg(value_name = "CH")]
        channel: String,
        /// The new name.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Archive the channel: read-only, still readable (admins, creator).
    Archive {
        /// Channel name or id.
        #[arg(value_name = "CH")]
        channel: String,
    },
    /// Unarchive the channel (admins, creator).
    Unarchive {
        /// Channel name or id.
        #[arg(value_name = "CH")]
        channel: String,
    },
    /// Who may post: `everyone` or `admins` (workspace admins only).
    Posting {
        /// Channel name or id.
        #[arg(value_name = "CH")]
        channel: String,
        /// `everyone` or `admins`.
        #[arg(value_name = "WHO", value_parser = ["everyone", "admins"])]
        who: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("courier").chain(args.iter().copied()))
    }

    /// Parses `args` and checks the subcommand.
    fn check(args: &[&str], expected: Command) {
        let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(cli.command, expected, "{args:?}");
    }

    /// `args` must be a usage error (exit code 2).
    fn check_usage_error(args: &[&str]) {
        let err = parse(args).expect_err(&format!("{args:?} should not parse"));
        assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_parses() {
        use crate::cli::people::{
            DirectoryArgs, MembersArgs, ProfileCommand, ProfileSetArgs, UsersCommand,
        };
        check(
            &["users", "get", "@ann", "42"],
            Command::Users(UsersCommand::Get {
                users: vec!["@ann".into(), "42".into()],
            }),
        );
        check(
            &[
                "profile",
                "set",
                "--display-name",
                "Ann",
                "--status-emoji",
                "☕",
            ],
            Command::Profile(ProfileCommand::Set(ProfileSetArgs {
                display_name: Some("Ann".into()),
                status_emoji: Some("☕".into()),
                ..ProfileSetArgs::default()
            })),
        );
        check(
            &["directory", "--prefix", "an"],
            Command::Directory(DirectoryArgs {
                prefix: "an".into(),
                limit: 100,
            }),
        );
        check(
            &["members", "general", "--profiles"],
            Command::Members(MembersArgs {
                conversation: "general".into(),
                profiles: true,
                limit: 1000,
            }),
        );
        check(&["login"], Command::Login { offline: false });
        check(&["whoami"], Command::Whoami);
        check(
            &["admin", "create-workspace", "acme"],
            Command::Admin(AdminCommand::CreateWorkspace {
                name: "acme".into(),
            }),
        );
        check(
            &["admin", "create-user", "--workspace", "42", "ann"],
            Command::Admin(AdminCommand::CreateUser {
                workspace: 42,
                name: "ann".into(),
                role: None,
                display_name: None,
            }),
        );
        check(
            &[
                "admin",
                "create-user",
                "--workspace",
                "42",
                "ann",
                "--role",
                "owner",
                "--display-name",
                "Ann Lee",
            ],
            Command::Admin(AdminCommand::CreateUser {
                workspace: 42,
                name: "ann".into(),
                role: Some(RoleArg(courier_core::api::Role::Owner)),
                display_name: Some("Ann Lee".into()),
            }),
        );
        check(
            &["admin", "set-role", "@gus", "guest"],
            Command::Admin(AdminCommand::SetRole {
                user: "@gus".into(),
                role: RoleArg(courier_core::api::Role::Guest),
            }),
        );
        check(
            &["admin", "deactivate", "7"],
            Command::Admin(AdminCommand::Deactivate { user: "7".into() }),
        );
        check(
            &["admin", "issue-token", "7"],
            Command::Admin(AdminCommand::IssueToken { user: 7 }),
        );
        check(
            &["admin", "revoke-token", "7"],
            Command::Admin(AdminCommand::RevokeToken {
                user: 7,
                token_id: None,
            }),
        );
        check(
            &["admin", "cluster", "status", "--json"],
            Command::Admin(AdminCommand::Cluster(ClusterCommand::Status)),
        );
        check(
            &["admin", "revoke-token", "7", "3"],
            Command::Admin(AdminCommand::RevokeToken {
                user: 7,
                token_id: Some(3),
            }),
        );
        check(
            &["channel", "create", "ops", "--private"],
            Command::Channel(ChannelCommand::Create {
                name: "ops".into(),
                private: true,
            }),
        );
        check(
            &["channel", "join", "general"],
            Command::Channel(ChannelCommand::Join {
                channel: "general".into(),
            }),
        );
        check(
            &["channel", "invite", "ops", "bob"],
            Command::Channel(ChannelCommand::Invite {
                channel: "ops".into(),
                user: "bob".into(),
            }),
        );
        check(
            &["channel", "leave", "12"],
            Command::Channel(ChannelCommand::Leave {
                channel: "12".into(),
            }),
        );
        check(&["channel", "list"], Command::Channel(ChannelCommand::List));
        check(
            &["channel", "topic", "general", "ship it"],
            Command::Channel(ChannelCommand::Topic {
                channel: "general".into(),
                text: "ship it".into(),
            }),
        );
        check(
            &["channel", "posting", "general", "admins"],
            Command::Channel(ChannelCommand::Posting {
                channel: "general".into(),
                who: "admins".into(),
            }),
        );
        assert!(parse(&["channel", "posting", "general", "guests"]).is_err());
        check(
            &["dm", "bob", "carol"],
            Command::Dm {
                users: vec!["bob".into(), "carol".into()],
            },
        );
        check(
            &["send", "general", "hello world"],
            Command::Send {
                conversation: "general".into(),
                text: "hello world".into(),
            },
        );
        check(
            &["edit", "general", "7", "fixed"],
            Command::Edit {
                conversation: "general".into(),
                seq: 7,
                text: "fixed".into(),
            },
        );
        check(
            &["delete", "@bob", "3"],
            Command::Delete {
                conversation: "@bob".into(),
                seq: 3,
            },
        );
        check(
            &["react", "general", "7", "+1", "--remove"],
            Command::React {
                conversation: "general".into(),
                seq: 7,
                emoji: "+1".into(),
                remove: true,
            },
        );
        check(
            &["reply", "general", "7", "on it", "--also-channel"],
            Command::Reply {
                conversation: "general".into(),
                root: 7,
                text: "on it".into(),
                also_channel: true,
            },
        );
        check(
            &["thread", "general", "7"],
            Command::Thread {
                conversation: "general".into(),
                root: 7,
                limit: 100,
            },
        );
        check(
            &["watch"],
            Command::Watch(WatchArgs {
                conversations: vec![],
                from_start: false,
                cursor_file: None,
            }),
        );
        check(
            &[
                "watch",
                "general",
                "@bob",
                "--from-start",
                "--cursor-file",
                "c.txt",
            ],
            Command::Watch(WatchArgs {
                conversations: vec!["general".into(), "@bob".into()],
                from_start: true,
                cursor_file: Some("c.txt".into()),
            }),
        );
        check(
            &["history", "general", "--before", "10", "--limit", "5"],
            Command::History {
                conversation: "general".into(),
                before: Some(10),
                after: None,
                limit: 5,
            },
        );
        check(
            &["history", "general"],
            Command::History {
                conversation: "general".into(),
                before: None,
                after: None,
                limit: 20,
            },
        );
        check(&["unread"], Command::Unread);
        check(
            &["wal", "inspect", "data"],
            Command::Wal(WalCommand::Inspect { dir: "data".into() }),
        );
        check(
            &["wal", "verify", "data/shard-0"],
            Command::Wal(WalCommand::Verify {
                dir: "data/shard-0".into(),
            }),
        );
        check(
            &["read", "general"],
            Command::Read {
                conversation: "general".into(),
                seq: None,
            },
        );
        check(
            &["read", "general", "9"],
            Command::Read {
                conversation: "general".into(),
                seq: Some(9),
            },
        );
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = parse(&[
            "send",
            "general",
            "hi",
            "--json",
            "--server",
            "ws://h:1",
            "--token",
            "t",
            "--timeout",
            "3",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.server.as_deref(), Some("ws://h:1"));
        assert_eq!(cli.token.as_deref(), Some("t"));
        assert_eq!(cli.timeout, 3);
        let cli = parse(&["--json", "unread"]).unwrap();
        assert!(cli.json);
    }

    #[test]
    fn usage_errors_exit_with_code_2() {
        check_usage_error(&["profile", "set", "--clear-status", "--status-text", "x"]);
        check_usage_error(&["users", "get"]);
        check_usage_error(&[]);
        check_usage_error(&["frobnicate"]);
        check_usage_error(&["send", "general"]);
        check_usage_error(&["dm"]);
        check_usage_error(&["dm", "1", "2", "3", "4", "5", "6", "7", "8"]);
        check_usage_error(&["admin", "create-user", "ann"]);
        check_usage_error(&["admin", "set-role", "7", "deactivated"]);
        check_usage_error(&["admin", "set-role", "7", "boss"]);
        check_usage_error(&["admin", "create-user", "--workspace", "x", "ann"]);
        check_usage_error(&["admin", "issue-token", "bob"]);
        check_usage_error(&["history", "c", "--before", "1", "--after", "2"]);
        check_usage_error(&["history", "c", "--limit", "-1"]);
        check_usage_error(&["read", "c", "nine"]);
        check_usage_error(&["--timeout", "soon", "unread"]);
        check_usage_error(&["wal", "verify"]);
    }
}
