//! Ledger-checked load against a real `courierd`: a fixture of writers and
//! conversations (public and private channel, DM, group DM, spread over
//! the shards by the server's placement), writer tasks that send unique
//! ledger bodies through the reconnecting `courier_tools::Client` (retries
//! reuse the `client_msg_id`), observer tasks that feed every live
//! `MessageEvent` to the ledger, and a full read of every conversation from
//! seq 1 checked by `courier_tools::ledger`.
//!
//! Writers and observers run on a tokio runtime owned by the test, so the
//! test thread stays free to kill and restart the daemon while they run:
//! they see dropped connections and reconnect by themselves, exactly like
//! real clients.

use super::{conversation, Client as RawClient, Server};
use courier_core::api::*;
use courier_tools::ledger::{self, CheckReport, Ledger, WriterId};
use courier_tools::{
    Backoff, Client, ClientOptions, ConnectOptions, Connection, Incoming, Outgoing,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// xorshift64*: small, seeded, deterministic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// A seed from `var`, or `default`.
pub fn env_u64(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A tokio runtime for clients (two workers: the machine has two cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Who writes where, who watches, who reads.
#[derive(Clone)]
pub struct Fixture {
    pub ledger: Arc<Mutex<Ledger>>,
    /// (writer, credential, conversations it writes to).
    pub writers: Vec<(WriterId, Credential, Vec<ConversationId>)>,
    /// (credential, conversations it receives live and reads for checks).
    pub observers: Vec<(Credential, Vec<ConversationId>)>,
    pub conversations: Vec<ConversationId>,
}

/// Where writers, observers and checks connect: one server, or a
/// cluster's list (`ws://a/,ws://b/,…`, which the client library fails
/// over between).
#[derive(Clone, Debug)]
pub struct Target(pub String);

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Target {
        Target(format!("ws://{addr}/"))
    }
}

impl From<&str> for Target {
    fn from(servers: &str) -> Target {
        Target(servers.to_owned())
    }
}

impl From<String> for Target {
    fn from(servers: String) -> Target {
        Target(servers)
    }
}

/// Creates users and conversations through the admin API and the blocking
/// client: writers w0..w3 and an observer `obs` in a new workspace named
/// `name`; a public channel (everyone), a private channel (everyone,
/// invited), the DM w0–w1 and the group DM w0, w2, w3, obs. `obs` observes
/// everything but the DM, which w1's second device observes.
pub fn fixture(server: &Server, ledger: Arc<Mutex<Ledger>>, name: &str) -> Fixture {
    fixture_at(server.addr, server.admin_credential(), ledger, name)
}

/// [`fixture`] on the server at `addr` (e.g. a cluster's primary) with the
/// admin credential `admin`.
pub fn fixture_at(
    addr: SocketAddr,
    admin: Credential,
    ledger: Arc<Mutex<Ledger>>,
    name: &str,
) -> Fixture {
    let mut admin_client = RawClient::connect(addr);
    admin_client.hello(admin).unwrap();
    let mut admin = admin_client;
    let workspace = match admin.request(Request::CreateWorkspace { name: name.into() }) {
        Ok(Response::WorkspaceCreated { workspace }) => workspace,
        other => panic!("{other:?}"),
    };
    let mut users = Vec::new();
    for n in ["w0", "w1", "w2", "w3", "obs"] {
        users.push(super::issued_credential(admin.request(
            Request::CreateUser {
                workspace,
                name: n.into(),
            },
        )));
    }
    let mut clients: Vec<RawClient> = users
        .iter()
        .map(|(_, c)| RawClient::login(addr, c))
        .collect();
    let public = conversation(clients[0].request(Request::CreateChannel {
        name: "pub".into(),
        private: false,
    }));
    for c in clients.iter_mut().skip(1) {
        conversation(c.request(Request::Join {
            conversation: public,
        }));
    }
    let private = conversation(clients[1].request(Request::CreateChannel {
        name: "priv".into(),
        private: true,
    }));
    for i in [0, 2, 3, 4] {
        assert_eq!(
            clients[1].request(Request::Invite {
                conversation: private,
                user: users[i].0,
            }),
            Ok(Response::Done)
        );
    }
    let dm = conversation(clients[0].request(Request::OpenDm {
        users: vec![users[1].0],
    }));
    let group = conversation(clients[0].request(Request::OpenDm {
        users: vec![users[2].0, users[3].0, users[4].0],
    }));
    let mut l = ledger.lock().unwrap();
    let mut writers = Vec::new();
    for (i, (user, credential)) in users.iter().take(4).enumerate() {
        let convs = match i {
            0 => vec![public, private, dm, group],
            1 => vec![public, private, dm],
            _ => vec![public, private, group],
        };
        writers.push((l.add_writer(*user), credential.clone(), convs));
    }
    let conversations = vec![public, private, dm, group];
    for c in &conversations {
        l.watch(*c);
    }
    drop(l);
    Fixture {
        ledger,
        writers,
        observers: vec![
            (users[4].1.clone(), vec![public, private, group]),
            (users[1].1.clone(), vec![dm]),
        ],
        conversations,
    }
}

/// Re-sends pick among a writer's this many most recent acknowledged
/// messages (far inside the server's dedup window of 512 per conversation).
const RESEND_RECENT: usize = 16;

/// How writers behave.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Pause between sends: uniform in 0..=pace_ms_max ms.
    pub pace_ms_max: u64,
    /// Percent of sends that re-send an acknowledged message (which must
    /// get its original ack back).
    pub resend_acked_pct: u64,
    /// How long one send keeps retrying over reconnects.
    pub retry_deadline: Duration,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            pace_ms_max: 6,
            resend_acked_pct: 2,
            retry_deadline: Duration::from_secs(3),
        }
    }
}

/// Writers and observers running on the runtime.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    errors: Arc<Mutex<Vec<String>>>,
    ledger: Arc<Mutex<Ledger>>,
    stats: Arc<Mutex<LoadStats>>,
}

/// What the writers went through.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadStats {
    /// Sends attempted (new, retried or re-sent).
    pub sends: u64,
    /// Sends that reconnected (the daemon was killed) and were retried
    /// with the same id before an answer came.
    pub retried_over_reconnect: u64,
    /// Sends that gave up (unknown outcome).
    pub gave_up: u64,
}

fn connect_options(target: &Target, credential: &Credential) -> ConnectOptions {
    let mut o = ConnectOptions::new(target.0.clone(), credential.clone());
    o.connect_timeout = Duration::from_secs(2);
    o.request_timeout = Duration::from_secs(2);
    o
}

fn client(target: &Target, credential: &Credential, retry: Duration) -> Client {
    let mut o = ClientOptions::new(connect_options(target, credential));
    o.retry_deadline = Some(retry);
    o.backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(400));
    Client::new(o)
}

impl Load {
    /// Starts every writer and observer of `fx`.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        target: impl Into<Target>,
        fx: &Fixture,
        options: LoadOptions,
        seed: u64,
    ) -> Load {
        let target = target.into();
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stats = Arc::new(Mutex::new(LoadStats::default()));
        let mut tasks = Vec::new();
        for (credential, convs) in &fx.observers {
            tasks.push(rt.spawn(observe(
                target.clone(),
                credential.clone(),
                convs.clone(),
                fx.ledger.clone(),
                stop.clone(),
            )));
        }
        for (i, (writer, credential, convs)) in fx.writers.iter().enumerate() {
            tasks.push(rt.spawn(write(
                client(&target, credential, options.retry_deadline),
                *writer,
                convs.clone(),
                fx.ledger.clone(),
                stop.clone(),
                errors.clone(),
                stats.clone(),
                options,
                seed ^ ((i as u64 + 1) << 32),
            )));
        }
        Load {
            stop,
            tasks,
            errors,
            ledger: fx.ledger.clone(),
            stats,
        }
    }

    /// Stops gracefully (every send in progress finishes or gives up),
    /// aborting what does not stop within 10 s; sends still in flight then
    /// count as indeterminate. Returns refusals a member should never get.
    pub fn stop(self, rt: &tokio::runtime::Runtime) -> (Vec<String>, LoadStats) {
        self.stop.store(true, Ordering::SeqCst);
        rt.block_on(async {
            for t in self.tasks {
                let abort = t.abort_handle();
                if tokio::time::timeout(Duration::from_secs(10), t)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
            }
        });
        self.ledger.lock().unwrap().abandon_in_flight();
        let stats = *self.stats.lock().unwrap();
        (std::mem::take(&mut *self.errors.lock().unwrap()), stats)
    }
}

#[allow(clippy::too_many_arguments)]
async fn write(
    mut client: Client,
    writer: WriterId,
    convs: Vec<ConversationId>,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<String>>>,
    stats: Arc<Mutex<LoadStats>>,
    options: LoadOptions,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    // A client retries what it never heard back about, with the same key.
    let unresolved = ledger.lock().unwrap().unresolved(writer);
    for key in unresolved {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let p = ledger.lock().unwrap().retry(key);
        let _ = send(&mut client, &ledger, &errors, &stats, p).await;
    }
    while !stop.load(Ordering::SeqCst) {
        let p = {
            let mut l = ledger.lock().unwrap();
            // Only recent acks: idempotency is promised within the dedup
            // window (DEDUP_WINDOW_PER_CONVERSATION later messages).
            let acked = if rng.below(100) < options.resend_acked_pct {
                let all = l.acknowledged(writer);
                all[all.len().saturating_sub(RESEND_RECENT)..].to_vec()
            } else {
                Vec::new()
            };
            if acked.is_empty() {
                let c = convs[rng.below(convs.len() as u64) as usize];
                l.plan(writer, c)
            } else {
                l.retry(acked[rng.below(acked.len() as u64) as usize].0)
            }
        };
        let _ = send(&mut client, &ledger, &errors, &stats, p).await;
        let pause = rng.below(options.pace_ms_max + 1);
        if pause > 0 {
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

async fn send(
    client: &mut Client,
    ledger: &Mutex<Ledger>,
    errors: &Mutex<Vec<String>>,
    stats: &Mutex<LoadStats>,
    p: ledger::Planned,
) -> bool {
    let outgoing = Outgoing::text(p.body.clone());
    let generation = client.generation();
    let result = client
        .send_with_id(p.conversation, p.client_msg_id, &outgoing)
        .await;
    {
        let mut s = stats.lock().unwrap();
        s.sends += 1;
        if generation != 0 && client.generation() != generation {
            s.retried_over_reconnect += 1;
        }
        if matches!(&result, Err(e) if e.is_transient()) {
            s.gave_up += 1;
        }
    }
    let mut l = ledger.lock().unwrap();
    match result {
        Ok(ack) => {
            assert_eq!(
                ack.conversation, p.conversation,
                "ack for another conversation"
            );
            l.acked(p.key, ack.seq);
            true
        }
        Err(e) if e.is_transient() => {
            l.indeterminate(p.key);
            false
        }
        Err(e) => {
            l.refused(p.key);
            errors
                .lock()
                .unwrap()
                .push(format!("{} refused: {e}", p.key));
            false
        }
    }
}

async fn observe(
    target: Target,
    credential: Credential,
    convs: Vec<ConversationId>,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) {
    let options = connect_options(&target, &credential);
    while !stop.load(Ordering::SeqCst) {
        let Ok((_conn, mut events)) = Connection::connect(&options).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        loop {
            let next = tokio::time::timeout(Duration::from_millis(50), events.next()).await;
            match next {
                Ok(Some(Incoming::Event(Event::Message(m)))) if convs.contains(&m.conversation) => {
                    ledger.lock().unwrap().delivered(&m);
                }
                Ok(Some(_)) => {}
                Ok(None) => break, // closed: reconnect
                Err(_) if stop.load(Ordering::SeqCst) => return,
                Err(_) => {}
            }
        }
    }
}

/// Reads every conversation in `which` (all of the fixtures' when `None`)
/// from seq 1 as its observers, and checks the ledger.
pub fn check(
    rt: &tokio::runtime::Runtime,
    target: impl Into<Target>,
    fixtures: &[&Fixture],
) -> CheckReport {
    let target = target.into();
    let ledger = fixtures[0].ledger.clone();
    let reads = rt.block_on(async {
        let mut reads = BTreeMap::new();
        for fx in fixtures {
            for (credential, convs) in &fx.observers {
                let mut c = client(&target, credential, Duration::from_secs(30));
                for conv in convs {
                    let read = ledger::read_conversation(&mut c, *conv)
                        .await
                        .unwrap_or_else(|e| panic!("reading conversation {}: {e}", conv.0));
                    reads.insert(*conv, read);
                }
            }
        }
        reads
    });
    let mut l = ledger.lock().unwrap();
    if reads.len() == l.conversations().len() {
        l.check(&reads)
    } else {
        l.check_partial(&reads)
    }
}

/// The most recent acknowledged message of every writer of `fx` (none for
/// a writer with no ack yet).
pub fn last_acked(fx: &Fixture) -> Vec<ledger::Key> {
    let l = fx.ledger.lock().unwrap();
    fx.writers
        .iter()
        .filter_map(|(writer, _, _)| l.acknowledged(*writer).last().map(|(key, _)| *key))
        .collect()
}

/// Re-sends the acknowledged messages `keys` once more, each as its writer
/// (same `client_msg_id` and body, through a fresh client on `target`),
/// and records the answers in the ledger, which reports an ack that
/// differs from the first (`Violation::AckChanged`) at the next check.
/// Across a failover this checks that the dedup window was replicated.
/// Returns how many re-sends were answered with an ack.
pub fn resend(
    rt: &tokio::runtime::Runtime,
    target: impl Into<Target>,
    fx: &Fixture,
    keys: &[ledger::Key],
) -> u64 {
    let target = target.into();
    let errors = Mutex::new(Vec::new());
    let stats = Mutex::new(LoadStats::default());
    let mut answered = 0;
    for key in keys {
        let Some((_, credential, _)) = fx.writers.iter().find(|(w, _, _)| *w == key.writer) else {
            panic!("{key}: not a writer of this fixture");
        };
        let planned = fx.ledger.lock().unwrap().retry(*key);
        let mut c = client(&target, credential, Duration::from_secs(30));
        if rt.block_on(send(&mut c, &fx.ledger, &errors, &stats, planned)) {
            answered += 1;
        }
    }
    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "re-sends of acknowledged messages refused: {errors:?}"
    );
    answered
}
