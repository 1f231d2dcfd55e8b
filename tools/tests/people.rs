//! People (issue 16) end to end against a real `courierd`: profiles set
//! through the client library and read back by id, by handle, in the
//! directory and in member lists — also after a clean restart and after
//! `kill -9` — and the same through the `courier` CLI
//! (`profile set`, `users get`, `directory`, `members`).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use courier_core::api::{ConversationId, ProfileUpdate, Reject, Status, UserProfile};
use courier_tools::testkit::ServerProcess;
use courier_tools::{
    Client, ClientError, ClientOptions, ConnectOptions, IssuedToken, People, ProfileCache,
    Requester,
};
use serde_json::Value;
use std::process::{Command, Stdio};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(server: &ServerProcess, token: &str) -> Client {
    let credential = courier_tools::token::parse(token).unwrap();
    let mut client = Client::new(ClientOptions::new(ConnectOptions::new(
        server.url(),
        credential,
    )));
    client.connect().await.unwrap();
    client
}

struct Acme {
    workspace: courier_core::api::WorkspaceId,
    ann: IssuedToken,
    bob: IssuedToken,
    carl: IssuedToken,
    general: ConversationId,
}

async fn setup(server: &ServerProcess) -> Acme {
    let mut admin = connect(server, &server.admin_token().unwrap()).await;
    let ws = admin.create_workspace("acme").await.unwrap();
    let ann = admin.create_user(ws, "ann").await.unwrap();
    let bob = admin.create_user(ws, "bob").await.unwrap();
    let carl = admin.create_user(ws, "carl").await.unwrap();
    let mut a = connect(server, &ann.text).await;
    let general = a.create_channel("general", false).await.unwrap().id;
    a.invite(general, bob.user).await.unwrap();
    Acme {
        workspace: ws,
        ann,
        bob,
        carl,
        general,
    }
}

fn full_update() -> ProfileUpdate {
    ProfileUpdate {
        display_name: Some("Ann Lee".into()),
        real_name: Some("Ann Marie Lee".into()),
        title: Some("CTO".into()),
        time_zone: Some("Europe/Berlin".into()),
        avatar_url: Some("https://x.example/ann.png".into()),
        status: Some(Status {
            emoji: "🌴".into(),
            text: "on leave".into(),
            expires: None,
        }),
    }
}

/// What bob reads about ann, carl and himself: by id, by handle, the
/// directory and the channel's members with names.
async fn read_back(server: &ServerProcess, acme: &Acme) -> (Vec<UserProfile>, Vec<String>) {
    let mut b = connect(server, &acme.bob.text).await;
    let profiles = b
        .get_users(&[acme.ann.user, acme.carl.user, acme.bob.user])
        .await
        .unwrap_or_else(|e| panic!("get_users: {e}\n{}", server.log_tail(60)));
    assert_eq!(b.user_by_handle("ann").await.unwrap(), profiles[0]);
    let page = b.directory("", None, 10).await.unwrap();
    let mut names: Vec<String> = page.entries.iter().map(|e| e.handle.clone()).collect();
    let search = b.directory("an", None, 10).await.unwrap();
    names.push(format!(
        "search:{}",
        search
            .entries
            .iter()
            .map(|e| e.handle.as_str())
            .collect::<Vec<_>>()
            .join(",")
    ));
    let members = b.list_members(acme.general, None, 10).await.unwrap();
    let mut cache = ProfileCache::new();
    cache.resolve(&mut b, &members.members).await.unwrap();
    let mut shown: Vec<String> = members.members.iter().map(|u| cache.name(*u)).collect();
    shown.sort();
    names.push(format!("members:{}:{}", members.total, shown.join(",")));
    (profiles, names)
}

#[test]
fn profiles_set_through_the_library_survive_restarts_and_kill_9() {
    let mut server = ServerProcess::spawn_temp(2).unwrap();
    let rt = rt();
    let (acme, before) = rt.block_on(async {
        let acme = setup(&server).await;
        let mut a = connect(&server, &acme.ann.text).await;
        let first = a.set_profile(None, full_update()).await.unwrap();
        assert_eq!((first.user, first.version), (acme.ann.user, 1));
        assert_eq!(first.profile.title, "CTO");
        // An admin edits anyone's profile; a user only their own.
        let mut admin = connect(&server, &server.admin_token().unwrap()).await;
        let carl = admin
            .set_profile(
                Some(acme.carl.user),
                ProfileUpdate {
                    display_name: Some("Zed Carl".into()),
                    ..ProfileUpdate::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(carl.version, 1);
        let refused = a
            .set_profile(
                Some(acme.bob.user),
                ProfileUpdate {
                    title: Some("intern".into()),
                    ..ProfileUpdate::default()
                },
            )
            .await;
        assert!(
            matches!(refused, Err(ClientError::Rejected(Reject::NotAdmin))),
            "{refused:?}"
        );
        let too_long = a
            .set_profile(
                None,
                ProfileUpdate {
                    display_name: Some("x".repeat(81)),
                    ..ProfileUpdate::default()
                },
            )
            .await;
        assert!(
            matches!(too_long, Err(ClientError::Rejected(Reject::TooLarge(_)))),
            "{too_long:?}"
        );
        let before = read_back(&server, &acme).await;
        (acme, before)
    });
    let (profiles, names) = &before;
    assert_eq!(profiles.len(), 3);
    assert_eq!(profiles[0].profile.display_name, "Ann Lee");
    assert_eq!(profiles[0].profile.status.text, "on leave");
    assert_eq!(profiles[0].version, 1);
    assert_eq!(profiles[1].profile.display_name, "Zed Carl");
    assert_eq!(
        (profiles[2].handle.as_str(), profiles[2].version),
        ("bob", 0)
    );
    // Sorted by display name, else handle: "ann lee", "bob", "zed carl".
    assert_eq!(
        names,
        &vec![
            "ann".to_owned(),
            "bob".to_owned(),
            "carl".to_owned(),
            "search:ann".to_owned(),
            "members:2:@bob,Ann Lee".to_owned(),
        ]
    );
    // A clean restart (snapshots written at stop), then kill -9 (replay).
    server.restart().unwrap();
    assert_eq!(rt.block_on(read_back(&server, &acme)), before);
    rt.block_on(async {
        let mut a = connect(&server, &acme.ann.text).await;
        let next = a
            .set_profile(
                None,
                ProfileUpdate {
                    display_name: Some("Anna".into()),
                    ..ProfileUpdate::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(next.version, 2, "versions keep growing after a restart");
    });
    server.kill9();
    server.start_again().unwrap();
    let (profiles, names) = rt.block_on(read_back(&server, &acme));
    assert_eq!(profiles[0].profile.display_name, "Anna");
    assert_eq!(profiles[0].profile.title, "CTO");
    assert_eq!(profiles[0].version, 2);
    assert_eq!(names[3], "search:ann");
    assert_eq!(names[4], "members:2:@bob,Anna");
}

/// A `courier` command against `server` with a clean environment.
fn courier(server: &ServerProcess, token: &str, args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_courier"))
        .env_remove("COURIER_TOKEN")
        .env(
            "COURIER_CONFIG",
            server.data_dir().with_file_name("cli-config.toml"),
        )
        .env("COURIER_SERVER", server.url())
        .args(["--token", token, "--json"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "courier {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_cli_sets_and_shows_profiles_the_directory_and_members() {
    let server = ServerProcess::spawn_temp(2).unwrap();
    let acme = rt().block_on(setup(&server));
    let set = courier(
        &server,
        &acme.ann.text,
        &[
            "profile",
            "set",
            "--display-name",
            "Ann Lee",
            "--title",
            "CTO",
            "--status-emoji",
            "🌴",
            "--status-text",
            "away",
            "--status-expires-in",
            "3600",
        ],
    );
    assert_eq!(set[0]["display_name"], "Ann Lee");
    assert_eq!(set[0]["version"], 1);
    assert!(set[0]["status_expires"].is_u64());
    let admin = server.admin_token().unwrap();
    courier(
        &server,
        &admin,
        &[
            "profile",
            "set",
            "--user",
            &acme.bob.user.0.to_string(),
            "--display-name",
            "Bobby",
        ],
    );
    let got = courier(&server, &acme.bob.text, &["users", "get", "@ann", "bob"]);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["handle"], "ann");
    assert_eq!(got[0]["title"], "CTO");
    assert_eq!(got[0]["status_text"], "away");
    assert_eq!(got[1]["display_name"], "Bobby");
    let dir = courier(&server, &acme.bob.text, &["directory", "--limit", "2"]);
    let handles: Vec<&str> = dir.iter().map(|e| e["handle"].as_str().unwrap()).collect();
    assert_eq!(handles, ["ann", "bob"], "sorted by display name, limited");
    let dir = courier(&server, &acme.bob.text, &["directory", "--prefix", "CA"]);
    assert_eq!(dir.len(), 1);
    assert_eq!(dir[0]["handle"], "carl");
    let members = courier(
        &server,
        &acme.bob.text,
        &["members", "general", "--profiles"],
    );
    let mut names: Vec<&str> = members
        .iter()
        .map(|m| m["display_name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["Ann Lee", "Bobby"]);
    let browse = courier(&server, &acme.bob.text, &["channel", "browse"]);
    assert_eq!(browse.len(), 1);
    assert_eq!(browse[0]["name"], "general");
    let ids = courier(&server, &acme.bob.text, &["members", "general"]);
    let mut ids: Vec<u64> = ids
        .iter()
        .map(|m| m["user"].as_str().unwrap().parse().unwrap())
        .collect();
    ids.sort();
    let mut expected = vec![acme.ann.user.0, acme.bob.user.0];
    expected.sort();
    assert_eq!(ids, expected);
}

/// A `courier` command that must fail; returns its stderr.
fn courier_fails(server: &ServerProcess, token: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_courier"))
        .env_remove("COURIER_TOKEN")
        .env(
            "COURIER_CONFIG",
            server.data_dir().with_file_name("cli-config.toml"),
        )
        .env("COURIER_SERVER", server.url())
        .args(["--token", token])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "courier {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_cli_manages_roles_and_history_shows_names() {
    let server = ServerProcess::spawn_temp(2).unwrap();
    let acme = rt().block_on(setup(&server));
    let admin = server.admin_token().unwrap();
    let ws = acme.workspace.0.to_string();
    // The admin token bootstraps an admin; from then on ann manages users.
    let ann_id = acme.ann.user.0.to_string();
    let set = courier(&server, &admin, &["admin", "set-role", &ann_id, "admin"]);
    assert_eq!(set[0]["role"], "admin");
    let dora = courier(
        &server,
        &acme.ann.text,
        &[
            "admin",
            "create-user",
            "--workspace",
            &ws,
            "dora",
            "--role",
            "guest",
        ],
    );
    assert_eq!(dora[0]["role"], "guest");
    let dora_token = dora[0]["token"].as_str().unwrap().to_owned();
    // A guest creates no channels and browses none: a clear refusal.
    let err = courier_fails(&server, &dora_token, &["channel", "create", "mine"]);
    assert!(err.contains("guests cannot create channels"), "{err}");
    let err = courier_fails(&server, &dora_token, &["channel", "browse"]);
    assert!(err.contains("guests cannot browse"), "{err}");
    // A member manages nobody.
    let err = courier_fails(
        &server,
        &acme.bob.text,
        &["admin", "set-role", "@dora", "member"],
    );
    assert!(err.contains("admin"), "{err}");
    // Names in history: display name, else @handle.
    courier(
        &server,
        &acme.ann.text,
        &["profile", "set", "--display-name", "Ann Lee"],
    );
    courier(&server, &acme.ann.text, &["send", "general", "hello"]);
    courier(&server, &acme.bob.text, &["send", "general", "hi ann"]);
    let history = courier(&server, &acme.bob.text, &["history", "general"]);
    let names: Vec<(&str, &str)> = history
        .iter()
        .map(|m| {
            (
                m["sender_name"].as_str().unwrap(),
                m["body"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, [("Ann Lee", "hello"), ("@bob", "hi ann")]);
    assert_eq!(history[0]["sender"], ann_id, "ids stay");
    // Your own tokens: listed, the one in use marked; another revoked.
    let listed = courier(&server, &acme.bob.text, &["token", "list"]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["current"], true);
    let bob_id = acme.bob.user.0.to_string();
    let issued = courier(&server, &admin, &["admin", "issue-token", &bob_id]);
    let second = issued[0]["token_id"].as_str().unwrap().to_owned();
    assert_eq!(
        courier(&server, &acme.bob.text, &["token", "list"]).len(),
        2
    );
    let revoked = courier(&server, &acme.bob.text, &["token", "revoke", &second]);
    assert_eq!(revoked[0]["revoked"], true);
    let listed = courier(&server, &acme.bob.text, &["token", "list"]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    // Deactivation by ann (a name: her token has a workspace).
    let gone = courier(&server, &acme.ann.text, &["admin", "deactivate", "@dora"]);
    assert_eq!(gone[0]["role"], "deactivated");
    let err = courier_fails(&server, &dora_token, &["whoami"]);
    assert!(err.contains("unauthenticated"), "{err}");
}

#[test]
fn the_cli_invites_and_a_newcomer_redeems_without_a_token() {
    let server = ServerProcess::spawn_temp(2).unwrap();
    let acme = rt().block_on(setup(&server));
    let admin = server.admin_token().unwrap();
    let ann_id = acme.ann.user.0.to_string();
    courier(&server, &admin, &["admin", "set-role", &ann_id, "admin"]);
    // A member creates no invites until the workspace allows it.
    let err = courier_fails(&server, &acme.bob.text, &["invite", "create"]);
    assert!(err.contains("only admins create invites"), "{err}");
    let created = courier(
        &server,
        &acme.ann.text,
        &[
            "invite",
            "create",
            "--uses",
            "2",
            "--expires",
            "1d",
            "--role",
            "guest",
        ],
    );
    assert_eq!(created[0]["role"], "guest");
    assert_eq!(created[0]["max_uses"], 2);
    let code = created[0]["code"].as_str().unwrap().to_owned();
    assert!(code.starts_with("ci1_"), "{code}");
    // Redeeming needs no token at all.
    let gus = courier(
        &server,
        "",
        &[
            "invite",
            "redeem",
            &code,
            "--handle",
            "gus",
            "--display-name",
            "Gus Grey",
        ],
    );
    let gus_token = gus[0]["token"].as_str().unwrap().to_owned();
    let who = courier(&server, &gus_token, &["whoami"]);
    assert_eq!(who[0]["user"], gus[0]["user"]);
    // The invite's role from the first session on.
    let err = courier_fails(&server, &gus_token, &["channel", "create", "mine"]);
    assert!(err.contains("guests cannot create channels"), "{err}");
    let shown = courier(&server, &acme.ann.text, &["users", "get", "@gus"]);
    assert_eq!(shown[0]["display_name"], "Gus Grey");
    // A taken handle leaves the use; then the second use; then none left.
    let err = courier_fails(&server, "", &["invite", "redeem", &code, "--handle", "gus"]);
    assert!(err.contains("already exists"), "{err}");
    courier(&server, "", &["invite", "redeem", &code, "--handle", "hal"]);
    let err = courier_fails(&server, "", &["invite", "redeem", &code, "--handle", "ivy"]);
    assert!(err.contains("used as many times"), "{err}");
    let listed = courier(&server, &acme.ann.text, &["invite", "list"]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["uses"], 2);
    // Revoked: refused by name. Members invite once allowed.
    let other = courier(&server, &acme.ann.text, &["invite", "create"]);
    let id = other[0]["id"].as_str().unwrap().to_owned();
    let other_code = other[0]["code"].as_str().unwrap().to_owned();
    courier(&server, &acme.ann.text, &["invite", "revoke", &id]);
    let err = courier_fails(
        &server,
        "",
        &["invite", "redeem", &other_code, "--handle", "rex"],
    );
    assert!(err.contains("revoked"), "{err}");
    courier(&server, &acme.ann.text, &["invite", "policy", "members"]);
    let by_bob = courier(&server, &acme.bob.text, &["invite", "create"]);
    assert_eq!(by_bob[0]["role"], "member");
    // DMs are named by the other members' handles; --json says so too.
    courier(&server, &acme.ann.text, &["send", "@bob", "psst"]);
    let dm = courier(&server, &acme.bob.text, &["history", "@ann"]);
    assert_eq!(dm[0]["conversation_name"], "@ann");
    assert_eq!(dm[0]["body"], "psst");
    let group = courier(&server, &acme.ann.text, &["dm", "@bob", "@carl"]);
    let id = group[0]["conversation"].as_str().unwrap().to_owned();
    courier(&server, &acme.ann.text, &["send", &id, "all three"]);
    let seen = courier(&server, &acme.bob.text, &["history", &id]);
    let name = seen[0]["conversation_name"].as_str().unwrap();
    assert!(
        name == "@ann,@carl" || name == "@carl,@ann",
        "group DM named {name}"
    );
    let channel = courier(&server, &acme.ann.text, &["history", "general"]);
    assert!(channel.is_empty(), "nothing sent there in this test");
}
