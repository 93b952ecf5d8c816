//! Real `redis-server` processes for the Redis tier's tests: one server,
//! or a Redis Cluster of three masters made by `redis-cli --cluster
//! create`, each on loopback, with no persistence, in a directory of its
//! own. A test can kill, stop, continue and restart a server on its port,
//! and read everything a server holds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::ports::{free_tcp_port, tcp_port_free};
use crate::tools;

/// How long a server may take to answer its first PING, or a cluster to
/// say `cluster_state:ok`.
const READY: Duration = Duration::from_secs(60);
const PACKAGE: &str = "redis-server (and redis-tools for redis-cli)";

/// Fails the test unless redis-server and redis-cli are installed.
pub fn require_redis() {
    tools::require("redis-server", &["--version"], PACKAGE);
    tools::require("redis-cli", &["--version"], PACKAGE);
}

/// One `redis-server` on 127.0.0.1.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    cluster: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// A standalone server on a free port.
    pub fn start(dir: &Path) -> RedisServer {
        Self::start_kind(dir, false)
    }

    fn start_kind(dir: &Path, cluster: bool) -> RedisServer {
        require_redis();
        // A port free a moment ago may be taken meanwhile: try again on
        // another. A cluster node also needs port + 10000 (its bus).
        for _ in 0..20 {
            let port = free_tcp_port();
            if cluster && (port > 55_000 || !tcp_port_free(port + 10_000)) {
                continue;
            }
            let mut server = RedisServer {
                port,
                dir: dir.join(format!("redis-{port}")),
                cluster,
                child: None,
            };
            std::fs::create_dir_all(&server.dir).unwrap();
            if server.launch() {
                return server;
            }
        }
        panic!("redis-server did not start on any of 20 free ports");
    }

    /// Starts the process; true once it answers PING.
    fn launch(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if self.cluster {
            command.args(["--cluster-enabled", "yes", "--cluster-config-file"]);
            command.arg(self.dir.join("nodes.conf"));
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting redis-server: {e}"));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + READY;
        while std::time::Instant::now() < deadline {
            if let Some(child) = &mut self.child {
                if child.try_wait().unwrap().is_some() {
                    self.child = None;
                    return false; // e.g. the port was taken
                }
            }
            if self.ping() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on {} never answered:\n{}",
            self.port,
            self.log()
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:PORT`, for `cache-redis`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        client.get_connection_with_timeout(Duration::from_secs(2))
    }

    /// Whether the server answers PING now.
    pub fn ping(&self) -> bool {
        self.connection()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// Runs one command; panics on failure.
    pub fn command<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut connection = self
            .connection()
            .unwrap_or_else(|e| panic!("connecting to redis {}: {e}", self.port));
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut connection)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// Every key this server holds, with its value.
    pub fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut connection = self.connection().expect("connecting to redis");
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut connection)
            .expect("KEYS");
        keys.into_iter()
            .filter_map(|key| {
                let value: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&key)
                    .query(&mut connection)
                    .expect("GET");
                value.map(|value| (key, value))
            })
            .collect()
    }

    /// Keys held now.
    pub fn dbsize(&self) -> u64 {
        self.command(&["DBSIZE"])
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server runs");
        crate::send_signal(child.id(), signal);
    }

    /// Kills the server (SIGKILL) and reaps it: its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        for _ in 0..50 {
            if self.launch() {
                return;
            }
            // The port lingers a moment after a kill.
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart on {}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters, no replicas, slots spread evenly.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(dir: &Path) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_kind(dir, true)).collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(node.addr().to_string());
        }
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        let output = tools::run_bounded(&mut create, b"", READY);
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster { nodes };
        let ok = crate::wait_until_blocking(READY, || {
            cluster.nodes.iter().all(|node| {
                node.command::<String>(&["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            })
        });
        assert!(ok, "the Redis Cluster never reached cluster_state:ok");
        cluster
    }

    /// `redis+cluster://A,B,C`, for `cache-redis`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|n| n.addr().to_string()).collect();
        format!("redis+cluster://{}", nodes.join(","))
    }
}
