//! For test suites (feature `testkit`): a `nats-server` with JetStream per test, on a port and
//! in a store directory of its own, or a visible message saying why a test that needs one was
//! skipped.
#![allow(clippy::expect_used, clippy::missing_panics_doc)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Says a test was skipped, on stderr itself (the test harness captures `eprintln!`). With
/// `STRATA_REQUIRE_TOOLS=1` (CI) a missing server fails the test instead.
pub fn skipped(test: &str, why: &str) {
    assert!(
        std::env::var("STRATA_REQUIRE_TOOLS").as_deref() != Ok("1"),
        "{test}: {why} (STRATA_REQUIRE_TOOLS=1)"
    );
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
}

/// A running `nats-server -js`, killed on drop, its store directory removed.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    store: PathBuf,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
}

impl NatsServer {
    /// Starts one, or `None` (said on stderr) when `nats-server` is not installed.
    pub fn start(test: &str) -> Option<Self> {
        let store = store_dir("single");
        let child = match spawn(&store, &["-p", "-1"]) {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&store);
                skipped(
                    test,
                    &format!("cannot start nats-server ({e}): apt-get install nats-server"),
                );
                return None;
            }
        };
        let ports = store.join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = loop {
            if let Some(url) = std::fs::read_to_string(&ports)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|ports| ports["nats"][0].as_str().map(str::to_owned))
            {
                break url;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server wrote no ports file in 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Some(Self { child, store, url })
    }

    /// Stops the server at once, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on its port and store (what it held survives), once it was
    /// killed; returns when it takes connections.
    pub fn restart(&mut self) {
        self.kill();
        let port = port_of(&self.url);
        self.child =
            spawn(&self.store, &["-p", &port.to_string()]).expect("cannot start nats-server again");
        wait_for_port(port);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// Three `nats-server`s in a JetStream cluster on loopback, each with its own store, killed on
/// drop.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Option<Child>>,
    store: PathBuf,
    /// `nats://127.0.0.1:PORT` of each node, in node order (`n0`, `n1`, `n2`).
    pub urls: Vec<String>,
}

impl NatsCluster {
    /// Starts the three nodes and waits until each takes connections (`None`, said on stderr,
    /// when `nats-server` is not installed). The cluster has elected its meta leader once a
    /// stream can be created; callers retry that. Ports are picked free, then taken by the
    /// servers: another process may take one in between, so a cluster whose node does not
    /// come up is started again on other ports.
    pub fn start(test: &str) -> Option<Self> {
        for _ in 0..3 {
            match Self::start_once() {
                Ok(Some(cluster)) => return Some(cluster),
                Ok(None) => {}
                Err(e) => {
                    skipped(
                        test,
                        &format!("cannot start nats-server ({e}): apt-get install nats-server"),
                    );
                    return None;
                }
            }
        }
        panic!("a three-node cluster did not come up in three tries");
    }

    /// One try: `Ok(None)` when a node took no connection in time.
    fn start_once() -> std::io::Result<Option<Self>> {
        let store = store_dir("cluster");
        let ports = free_ports::<9>();
        let ports: Vec<[u16; 3]> = ports.chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|[_, cluster, _]| format!("nats-route://127.0.0.1:{cluster}"))
            .collect();
        let mut cluster = Self {
            nodes: Vec::new(),
            store: store.clone(),
            urls: ports
                .iter()
                .map(|[client, _, _]| format!("nats://127.0.0.1:{client}"))
                .collect(),
        };
        for (index, [client, route, monitor]) in ports.iter().enumerate() {
            let dir = store.join(format!("n{index}"));
            std::fs::create_dir_all(&dir).expect("cannot create a node's store directory");
            let config = format!(
                "server_name: n{index}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n\
                 jetstream {{ store_dir: {dir:?} }}\n\
                 cluster {{ name: strata-test\n listen: 127.0.0.1:{route}\n routes: [{}] }}\n",
                routes.join(", ")
            );
            let file = dir.join("node.conf");
            std::fs::write(&file, config).expect("cannot write a node's configuration");
            cluster
                .nodes
                .push(Some(spawn_with(&["-c", &file.to_string_lossy()])?));
        }
        for [client, _, _] in &ports {
            if !port_opens(*client) {
                return Ok(None);
            }
        }
        Ok(Some(cluster))
    }

    /// Every node's URL, comma-separated, as a client that fails over is given them.
    pub fn url(&self) -> String {
        self.urls.join(",")
    }

    /// Kills node `index` (`n0`, `n1` or `n2`) at once.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes.get_mut(index).and_then(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A store directory no other server of this process uses.
fn store_dir(kind: &str) -> PathBuf {
    let store = std::env::temp_dir().join(format!(
        "strata-nats-{kind}-{}-{}",
        std::process::id(),
        next_number()
    ));
    std::fs::create_dir_all(&store).expect("cannot create the server's store directory");
    store
}

/// `nats-server -js` on loopback, without monitoring, storing in `store`, writing its ports
/// file there.
fn spawn(store: &std::path::Path, port: &[&str]) -> std::io::Result<Child> {
    let store = store.to_string_lossy();
    let mut args = vec!["-js", "-a", "127.0.0.1", "-m", "-1", "-sd", &store];
    args.extend_from_slice(port);
    args.extend_from_slice(&["--ports_file_dir", &store]);
    spawn_with(&args)
}

fn spawn_with(args: &[&str]) -> std::io::Result<Child> {
    let run = |program: &str| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    // Debian installs it in /usr/sbin, which a user's PATH may lack.
    run("nats-server").or_else(|_| run("/usr/sbin/nats-server"))
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("a nats://host:port URL")
}

/// `N` distinct ports free on loopback now (the kernel's picks, all held until all are picked,
/// then released for the servers to take).
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("no free port on loopback"))
        .collect();
    std::array::from_fn(|i| {
        listeners[i]
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    })
}

/// Whether a server takes connections on `port` within 20 s.
fn port_opens(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn wait_for_port(port: u16) {
    assert!(
        port_opens(port),
        "nats-server took no connection on {port} in 20 s"
    );
}

/// A name part no other server of this process uses.
fn next_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl NatsServer {
    /// Creates stream `STRATA` for `strata.>` as an operator may have made it, taking messages
    /// of at most `max_message_size` bytes; returns a JetStream context and the stream's
    /// configuration, to change it later (`update_stream`).
    pub async fn stream_of_small_messages(
        &self,
        max_message_size: i32,
    ) -> (
        async_nats::jetstream::Context,
        async_nats::jetstream::stream::Config,
    ) {
        let client = async_nats::connect(self.url.as_str())
            .await
            .expect("the test's server takes connections");
        let jetstream = async_nats::jetstream::new(client);
        let config = async_nats::jetstream::stream::Config {
            name: "STRATA".to_owned(),
            subjects: vec!["strata.>".to_owned()],
            storage: async_nats::jetstream::stream::StorageType::File,
            max_message_size,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        jetstream
            .create_stream(config.clone())
            .await
            .expect("the stream is created");
        (jetstream, config)
    }
}

impl NatsServer {
    /// A publisher to this server with the default settings (stream `STRATA`, prefix `strata`).
    pub async fn publisher(&self) -> crate::NatsPublisher {
        crate::NatsPublisher::connect(&crate::NatsSettings::new(&self.url))
            .await
            .expect("the test's server takes a publisher")
    }
}

/// The headers and the body the publisher sends for `event` (in order), for a benchmark that
/// times the broker alone with the same messages.
///
/// # Errors
/// Why the event cannot be written as a message.
pub fn message_of(
    event: &strata_ports::RecordedEvent,
) -> Result<(async_nats::HeaderMap, bytes::Bytes), String> {
    crate::message::parts(event, None)
}
