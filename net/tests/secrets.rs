//! Tokens are never stored or logged raw: a real `courierd` with debug
//! logging issues tokens, sessions log in (and fail to, with revoked and
//! wrong secrets), messages are sent, a token is revoked, the daemon is
//! restarted (so snapshots and WAL replay have everything), and then every
//! byte of every file under the data directory, the daemon's log (stderr)
//! and its stdout is searched for every secret in every form a token has
//! (its text, the secret's lowercase and uppercase hex, raw bytes, and
//! base64). A control string sent as a message body must be found, so a
//! scan that reads nothing fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use courier_core::api::*;
use courier_proto::close;
use std::path::PathBuf;

/// Standard or URL-safe base64 without padding (enough to search for).
fn base64(bytes: &[u8], url: bool) -> String {
    let table: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(table[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// Every form in which a secret could leak.
fn needles(text: &str, secret: &[u8; 32]) -> Vec<(String, Vec<u8>)> {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        ("token text".into(), text.as_bytes().to_vec()),
        ("secret hex".into(), hex.clone().into_bytes()),
        ("secret HEX".into(), hex.to_uppercase().into_bytes()),
        ("secret bytes".into(), secret.to_vec()),
        ("secret base64".into(), base64(secret, false).into_bytes()),
        ("secret base64url".into(), base64(secret, true).into_bytes()),
    ]
}

fn files_under(dir: PathBuf) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn issued(reply: Reply) -> (UserId, u64, [u8; 32]) {
    match reply {
        Ok(Response::TokenIssued {
            user,
            token,
            secret,
        }) => (user, token, secret),
        other => panic!("expected a token: {other:?}"),
    }
}

#[test]
fn tokens_are_never_stored_or_logged_raw() {
    let mut server = Server::start_full(2, &[], &[("COURIER_LOG", "debug")], None);
    let control = format!("control-body-{:032x}", rand_u128());
    let mut tokens: Vec<(String, [u8; 32])> = Vec::new();
    let admin_credential = server.admin_credential();
    let Credential::Admin(admin_secret) = admin_credential else {
        panic!("admin token is not an admin credential");
    };
    tokens.push((server.admin_token(), admin_secret));

    let mut admin = server.admin();
    let workspace = match admin.request(Request::CreateWorkspace {
        name: "acme".into(),
    }) {
        Ok(Response::WorkspaceCreated { workspace }) => workspace,
        other => panic!("{other:?}"),
    };
    let mut users = Vec::new();
    for name in ["ann", "bob"] {
        let (user, token, secret) = issued(admin.request(Request::CreateUser {
            workspace,
            name: name.into(),
        }));
        tokens.push((
            courier_proto::token::format_user(user, token, &secret),
            secret,
        ));
        users.push((user, token, secret));
    }
    // A second device token for ann, used, then revoked.
    let (ann, ann_second, second_secret) =
        issued(admin.request(Request::IssueToken { user: users[0].0 }));
    tokens.push((
        courier_proto::token::format_user(ann, ann_second, &second_secret),
        second_secret,
    ));
    let credential = |user: UserId, token: u64, secret: [u8; 32]| Credential::User {
        user,
        token,
        secret,
    };

    let mut ann1 = Client::login(server.addr, &credential(users[0].0, users[0].1, users[0].2));
    let mut bob = Client::login(server.addr, &credential(users[1].0, users[1].1, users[1].2));
    let mut ann2 = Client::login(server.addr, &credential(ann, ann_second, second_secret));
    let general = conversation(ann1.request(Request::CreateChannel {
        name: "general".into(),
        private: false,
    }));
    conversation(bob.request(Request::Join {
        conversation: general,
    }));
    ann1.send(general, &control);
    ann2.send(general, "from the second device");
    assert_eq!(
        admin.request(Request::RevokeToken {
            user: ann,
            token: Some(ann_second),
        }),
        Ok(Response::Done)
    );
    assert_eq!(ann2.expect_close(), Some(close::REVOKED));
    // Failed logins: the revoked token, and a wrong secret for a real
    // token id (the server must not log what it was offered).
    let mut wrong = [0x5a; 32];
    wrong[0] = 0xc3;
    tokens.push((
        courier_proto::token::format_user(users[1].0, users[1].1, &wrong),
        wrong,
    ));
    for bad in [
        credential(ann, ann_second, second_secret),
        credential(users[1].0, users[1].1, wrong),
    ] {
        let mut c = Client::connect(server.addr);
        assert_eq!(c.hello(bad), Err(Reject::Unauthenticated));
    }
    drop((ann1, bob, admin));

    // Stop (snapshots), start again (replay), use the tokens again, stop.
    assert_eq!(server.terminate(), Some(0));
    server.restart();
    let mut ann1 = Client::login(server.addr, &credential(users[0].0, users[0].1, users[0].2));
    ann1.send(general, "after the restart");
    let mut c = Client::connect(server.addr);
    assert_eq!(
        c.hello(credential(ann, ann_second, second_secret)),
        Err(Reject::Unauthenticated),
        "a revoked token works again after a restart"
    );
    drop((ann1, c));
    assert_eq!(server.terminate(), Some(0));

    let data = server.data_dir();
    let admin_token_file = data.join("admin.token");
    let data_files: Vec<PathBuf> = files_under(data)
        .into_iter()
        .filter(|p| *p != admin_token_file)
        .collect();
    let outputs = vec![server.dir.path().join("courierd.log"), server.stdout_path()];
    let log = std::fs::read(&outputs[0]).unwrap();
    assert!(
        contains(&log, b"DEBUG"),
        "the daemon did not log at debug level"
    );
    assert!(
        data_files
            .iter()
            .any(|p| p.to_string_lossy().contains("snap")),
        "no snapshot was written: {data_files:?}"
    );
    let mut control_found = false;
    for file in data_files.iter().chain(&outputs) {
        let bytes = std::fs::read(file).unwrap();
        control_found |= data_files.contains(file) && contains(&bytes, control.as_bytes());
        for (text, secret) in &tokens {
            for (form, needle) in needles(text, secret) {
                assert!(
                    !contains(&bytes, &needle),
                    "{form} of token {}… is in {}",
                    &text[..8],
                    file.display()
                );
            }
        }
    }
    assert!(
        control_found,
        "the control message body is in no file under the data directory: {data_files:?}"
    );
}
