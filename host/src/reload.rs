//! SIGHUP: re-read the configuration and swap in new certificates, a new
//! backend list and `enable-proxy-protocol`, without dropping the session
//! cache or any open connection.
//!
//! A [`Reloader`] keeps the arguments the process was started with, so a
//! reload re-reads every `--ini` file as well. It rebuilds every https
//! socket's [`Endpoint`] sites and the backend list, and only when all of
//! it succeeded swaps it in and sets whether new connections must start
//! with a PROXY protocol header (a balancer switched to or from sending
//! one is followed without a restart, which would lose the session cache); a reload that fails (a certificate file that is
//! missing or does not parse, a key that does not match) changes nothing and
//! logs why, naming the file.
//!
//! What a reload does not touch:
//!
//! - open connections: each keeps the TLS configuration it was accepted
//!   with, and requests already forwarded keep their backend; requests that
//!   start after the reload (on any connection) use the new backend list;
//! - the session cache: a certificate whose session context is unchanged
//!   keeps its session storage, so sessions made before the reload still
//!   resume. A new certificate has a new context (see [`crate::tls::context`]),
//!   under which sessions of the old one are not found: clients make a full
//!   handshake once, which is what must happen when the certificate changes.
//!   With `https-session-context` the context does not depend on the
//!   certificate, and sessions survive a certificate change too.
//! - what cannot change in a running process: listening addresses (an https
//!   socket added or removed), cache geometry and session settings, stats
//!   sockets, the process model and cluster options other than the keys.
//!   The cluster keys are re-read (a key rollover, see
//!   [`crate::sync::keys`]): a key file that cannot be read or parsed fails
//!   the whole reload, naming the file and the line, and the running keys
//!   stay. A change to any of
//!   these is refused with a warning naming the option, and the running value
//!   stays in force until a restart; the rest of the reload still applies.
//!
//! Interface for scripts and tests, on stderr: `cachet: reloaded` after a
//! reload took effect, `cachet: reload failed` after one that changed
//! nothing (the error itself is logged just before).

use std::ffi::OsString;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use tracing::{error, info, warn};

use crate::config::{Command, Config};
use crate::proxy::pool::PoolChange;
use crate::proxy::serve::Socket;
use crate::proxy::Proxy;
use crate::shutdown::{self, Hangups, Shutdown};
use crate::store::SessionStore;
use crate::tls::{Endpoint, Sessions};

/// Re-reads the configuration and applies it to running endpoints and
/// backend pools.
#[derive(Debug)]
pub struct Reloader {
    args: Vec<OsString>,
    /// The configuration the process started with: what cannot change live
    /// is compared against it.
    running: Config,
    endpoints: Vec<Arc<Endpoint>>,
    proxies: Vec<Arc<Proxy>>,
    /// The sockets' `enable-proxy-protocol` switches.
    proxy_protocol: Vec<Arc<AtomicBool>>,
    store: Option<Arc<SessionStore>>,
    /// One reload at a time.
    busy: Mutex<()>,
}

/// What a successful reload did.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// https sockets whose certificates were rebuilt.
    pub sockets: usize,
    /// The backend list's change.
    pub backends: PoolChange,
    /// `enable-proxy-protocol` now in force for new connections.
    pub proxy_protocol: bool,
    /// Changes that need a restart, each naming its option (also logged).
    pub refused: Vec<String>,
}

impl Reloader {
    /// A reloader for the process started with `args` (without the program
    /// name) into `running`, serving `endpoints` (each knows its configured
    /// socket) with the backend pools of `proxies` and the PROXY protocol
    /// switches `proxy_protocol`. `store` is the session cache, used for
    /// certificates whose context is new when `ssl-sessions-use-cache` is on.
    pub fn new(
        args: Vec<OsString>,
        running: &Config,
        endpoints: Vec<Arc<Endpoint>>,
        proxies: Vec<Arc<Proxy>>,
        proxy_protocol: Vec<Arc<AtomicBool>>,
        store: Option<Arc<SessionStore>>,
    ) -> Self {
        Self {
            args,
            running: running.clone(),
            endpoints,
            proxies,
            proxy_protocol,
            store,
            busy: Mutex::new(()),
        }
    }

    /// The reloader for a router's sockets, with this process's arguments.
    pub fn for_sockets<'a>(
        running: &Config,
        sockets: impl IntoIterator<Item = &'a Socket>,
        store: Option<Arc<SessionStore>>,
    ) -> Self {
        let mut endpoints: Vec<Arc<Endpoint>> = Vec::new();
        let mut proxies: Vec<Arc<Proxy>> = Vec::new();
        let mut proxy_protocol: Vec<Arc<AtomicBool>> = Vec::new();
        for socket in sockets {
            endpoints.push(Arc::clone(&socket.endpoint));
            push_once(&mut proxies, &socket.proxy);
            push_once(&mut proxy_protocol, &socket.proxy_protocol);
        }
        Self::new(
            std::env::args_os().skip(1).collect(),
            running,
            endpoints,
            proxies,
            proxy_protocol,
            store,
        )
    }

    /// Re-reads the configuration and applies what can change live. On
    /// error nothing changed.
    pub fn reload(&self) -> Result<Reloaded> {
        let _one_at_a_time = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let config = read_config(&self.args)?;

        let mut refused = fixed_changes(&self.running, &config);
        let sessions = Sessions::chosen(self.store.as_deref(), self.running.ssl_sessions_use_cache);

        // Sockets are matched by their configured address (as written, so
        // several `:0` sockets pair up in order).
        let mut unmatched: Vec<_> = config.https.iter().map(Some).collect();
        let mut rebuilt = Vec::new();
        for endpoint in &self.endpoints {
            let addr = endpoint.socket().addr;
            let found = unmatched
                .iter_mut()
                .find(|socket| socket.is_some_and(|socket| socket.addr == addr))
                .and_then(Option::take);
            let Some(socket) = found else {
                refused.push(format!(
                    "option `https`: {addr} is no longer configured, but a listening socket \
                     closes only on restart; it keeps serving its running certificates"
                ));
                continue;
            };
            let sites = endpoint.rebuild(
                socket,
                &config.sni,
                config.https_session_context.as_deref(),
                sessions,
            )?;
            rebuilt.push((endpoint, sites));
        }
        for socket in unmatched.into_iter().flatten() {
            refused.push(format!(
                "option `https`: {} is new, but a listening socket opens only on restart; \
                 not listening on it",
                socket.addr
            ));
        }

        // Everything is built: from here on nothing can fail.
        let sockets = rebuilt.len();
        for (endpoint, sites) in rebuilt {
            endpoint.replace(sites);
        }
        let mut backends = PoolChange::default();
        for proxy in &self.proxies {
            backends = proxy.pool.replace(&config.backends);
            // After `logrotate` moved the file: lines go to a new one.
            if let Some(log) = &proxy.access_log {
                if let Err(error) = log.reopen() {
                    refused.push(format!(
                        "option `access-log`: {error:#}; still writing to the file open before"
                    ));
                }
            }
        }
        for switch in &self.proxy_protocol {
            switch.store(config.enable_proxy_protocol, Relaxed);
        }
        // Every sync node of this process switches at its next turn.
        if let Some(keys) = self.store.as_ref().and_then(|s| s.cluster_keys()) {
            keys.reload_and_log(config.cluster.key.as_ref());
        }
        // Redis values: sealed under the new first key, looked up under all.
        if let (Some(redis), Some(keys)) = (
            self.store.as_ref().and_then(|s| s.redis()),
            config.cluster.key.as_ref(),
        ) {
            redis.rekey(keys);
        }
        Ok(Reloaded {
            sockets,
            backends,
            proxy_protocol: config.enable_proxy_protocol,
            refused,
        })
    }

    /// [`Reloader::reload`], logged: warnings for refused changes, then one
    /// info line and `cachet: reloaded`, or the error and `cachet: reload
    /// failed`.
    pub fn reload_and_log(&self) -> bool {
        match self.reload() {
            Ok(done) => {
                for refusal in &done.refused {
                    warn!("reload: {refusal}");
                }
                if self
                    .proxies
                    .iter()
                    .any(|proxy| proxy.pool.backends().is_empty())
                {
                    warn!("no `http-to` backend: every request will get 502");
                }
                info!(
                    sockets = done.sockets,
                    backends_added = ?done.backends.added,
                    backends_removed = ?done.backends.removed,
                    backends_kept = done.backends.kept,
                    proxy_protocol = done.proxy_protocol,
                    refused = done.refused.len(),
                    "configuration reloaded: certificates, backends and PROXY protocol in \
                     force for new connections and requests"
                );
                crate::say!("cachet: reloaded");
                true
            }
            Err(error) => {
                error!("reload failed, nothing changed: {error:#}");
                crate::say!("cachet: reload failed");
                false
            }
        }
    }
}

/// Adds `item` to `list` unless that very `Arc` is there already.
fn push_once<T>(list: &mut Vec<Arc<T>>, item: &Arc<T>) {
    if !list.iter().any(|known| Arc::ptr_eq(known, item)) {
        list.push(Arc::clone(item));
    }
}

/// The configuration `args` (without the program name) describe now, ini
/// files re-read: what a reload applies. A master that lists the backends
/// in its stats can use it on SIGHUP to `replace` its own pool.
pub fn read_config(args: &[OsString]) -> Result<Config> {
    match Config::load(args.iter().cloned()) {
        Ok(Command::Run(config)) => Ok(config),
        Ok(_) => bail!("re-reading the configuration: the arguments no longer describe a router"),
        Err(errors) => Err(errors).context("re-reading the configuration"),
    }
}

/// Changes to options that a running process cannot apply, one message each.
fn fixed_changes(running: &Config, new: &Config) -> Vec<String> {
    let mut refused = Vec::new();
    // Each option is shown the same way for both configurations.
    let mut check = |option: &str, shown: fn(&Config) -> String| {
        let (running, new) = (shown(running), shown(new));
        if running != new {
            refused.push(format!(
                "option `{option}` changed to {new}, which takes a restart; \
                 keeping the running value {running}"
            ));
        }
    };
    check("master", |c| show(c.master));
    check("reuse-port", |c| show(c.reuse_port));
    check("http-processes", |c| show(c.http_processes));
    check("cache", |c| show_option(c.cache.map(|c| c.items)));
    check("cache-blocksize", |c| {
        show_option(c.cache.map(|c| c.blocksize))
    });
    check("ssl-sessions-use-cache", |c| show(c.ssl_sessions_use_cache));
    check("ssl-sessions-timeout", |c| {
        show(c.ssl_sessions_timeout.as_secs())
    });
    // Ticket keys are made and held by the running receiver; switching
    // modes or periods would strand what clients hold.
    check("ssl-session-tickets", |c| show(c.tickets));
    check("stats", |c| show_option(c.stats));
    check("stats-http", |c| show_option(c.stats_http));
    check("cache-udp-server", |c| show_option(c.cluster.udp_server));
    check("cache-udp-node", |c| show(&c.cluster.udp_nodes));
    check("cache-redis", |c| {
        show_option(c.redis.as_ref().map(|r| &r.target))
    });
    check("cache-redis-timeout", |c| {
        show_option(c.redis.as_ref().map(|r| r.timeout.as_millis()))
    });
    check("access-log", |c| {
        show(c.access_log.as_ref().map(|log| &log.target))
    });
    check("access-log-format", |c| {
        show_option(c.access_log.as_ref().map(|log| log.format.name()))
    });
    // The keys themselves may change (a rollover, see
    // `crate::sync::keys`); turning the cluster on takes a restart.
    if running.cluster.key.is_none() && new.cluster.key.is_some() {
        refused.push(
            "option `cluster-key` (`cache-udp-key`) added, which takes a restart; the cluster stays off".to_owned(),
        );
    }
    refused
}

fn show(value: impl Debug) -> String {
    format!("{value:?}")
}

fn show_option<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "none".to_owned(), |value| value.to_string())
}

/// Reloads on every SIGHUP from `hangups` until `shutdown`. The work runs
/// on a blocking thread: it reads files and builds TLS configurations.
pub async fn watch(reloader: Reloader, mut hangups: Hangups, mut shutdown: Shutdown) {
    let reloader = Arc::new(reloader);
    loop {
        tokio::select! {
            signal = hangups.next() => {
                if signal.is_none() {
                    return;
                }
                info!(signal = "SIGHUP", "reloading certificates and backends");
                crate::systemd::reloading();
                let reloader = Arc::clone(&reloader);
                let applied = match tokio::task::spawn_blocking(move || reloader.reload_and_log()).await {
                    Ok(applied) => applied,
                    Err(error) => {
                        error!(%error, "reload failed, nothing changed");
                        crate::say!("cachet: reload failed");
                        false
                    }
                };
                crate::systemd::reloaded(applied);
            }
            () = shutdown.requested() => return,
        }
    }
}

/// Starts reloading `sockets` on SIGHUP until `shutdown`, with the
/// process's own arguments (see [`Reloader::for_sockets`]). Call it inside
/// the runtime and before announcing readiness: from this call on a SIGHUP
/// reloads instead of terminating the process.
pub fn spawn_watcher<'a>(
    running: &Config,
    sockets: impl IntoIterator<Item = &'a Socket>,
    store: Option<Arc<SessionStore>>,
    shutdown: Shutdown,
) {
    match shutdown::hangups() {
        Ok(hangups) => {
            let reloader = Reloader::for_sockets(running, sockets, store);
            tokio::spawn(watch(reloader, hangups, shutdown));
        }
        Err(error) => warn!(%error, "cannot watch for SIGHUP; reloading is off"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Backend, BackendProtocol};
    use crate::proxy::pool::BackendPool;
    use std::path::Path;

    /// Writes a self-signed certificate for `localhost` as crt.pem and key.pem.
    fn write_certificate(dir: &Path) {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.join("crt.pem"), generated.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), generated.signing_key.serialize_pem()).unwrap();
    }

    fn write_ini(dir: &Path, body: &str) -> Vec<OsString> {
        let ini = dir.join("router.ini");
        std::fs::write(&ini, format!("[uwsgi]\n{body}")).unwrap();
        vec!["--ini".into(), ini.into_os_string()]
    }

    fn config_of(args: &[OsString]) -> Config {
        match Config::from_args(args.iter().cloned()).unwrap() {
            crate::config::Invocation::Run(raw) => Config::from_raw(&raw).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    /// A reloader over endpoints and a pool built as the router builds them.
    fn reloader(args: Vec<OsString>) -> (Reloader, Vec<Arc<Endpoint>>, Arc<Proxy>) {
        let config = config_of(&args);
        let endpoints: Vec<_> = config
            .https
            .iter()
            .map(|socket| {
                Arc::new(
                    Endpoint::build(socket, &config.sni, None, Sessions::RustlsDefault).unwrap(),
                )
            })
            .collect();
        let proxy = Arc::new(Proxy {
            pool: BackendPool::new(&config.backends),
            metrics: Default::default(),
            access_log: None,
        });
        let reloader = Reloader::new(
            args,
            &config,
            endpoints.clone(),
            vec![Arc::clone(&proxy)],
            vec![Arc::new(AtomicBool::new(config.enable_proxy_protocol))],
            None,
        );
        (reloader, endpoints, proxy)
    }

    fn backend(addr: &str) -> Backend {
        Backend {
            name: addr.to_owned(),
            addr: addr.parse().unwrap(),
            protocol: BackendProtocol::Uwsgi,
        }
    }

    #[test]
    fn certificates_and_backends_swap_and_failures_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write_certificate(dir.path());
        let args = write_ini(
            dir.path(),
            "https = 127.0.0.1:0,crt.pem,key.pem\nhttp-to = 127.0.0.1:1\n",
        );
        let (reloader, endpoints, proxy) = reloader(args);
        let first = endpoints[0].current();

        // Nothing changed: same context, same sessions.
        let done = reloader.reload().unwrap();
        assert_eq!(done.sockets, 1);
        assert!(done.refused.is_empty(), "{:?}", done.refused);
        assert_eq!(
            endpoints[0].current().all().next().unwrap().context,
            first.all().next().unwrap().context
        );

        // A new certificate and another backend.
        write_certificate(dir.path());
        write_ini(
            dir.path(),
            "https = 127.0.0.1:0,crt.pem,key.pem\nhttp-to = 127.0.0.1:1\nhttp-to = 127.0.0.1:2\n",
        );
        let done = reloader.reload().unwrap();
        assert_eq!(done.backends.added, ["127.0.0.1:2"]);
        assert_eq!(done.backends.kept, 1);
        let second = endpoints[0].current();
        assert_ne!(
            second.all().next().unwrap().context,
            first.all().next().unwrap().context
        );
        assert_eq!(
            proxy.pool.backends(),
            [backend("127.0.0.1:1"), backend("127.0.0.1:2")]
        );

        // A missing key file: an error naming it, and nothing changes.
        std::fs::remove_file(dir.path().join("key.pem")).unwrap();
        write_ini(
            dir.path(),
            "https = 127.0.0.1:0,crt.pem,key.pem\nhttp-to = 127.0.0.1:3\n",
        );
        let error = format!("{:#}", reloader.reload().unwrap_err());
        assert!(error.contains("key.pem"), "{error}");
        assert!(Arc::ptr_eq(&endpoints[0].current(), &second));
        assert_eq!(proxy.pool.backends().len(), 2);

        // A key that does not parse: likewise.
        std::fs::write(
            dir.path().join("key.pem"),
            "-----BEGIN PRIVATE KEY-----\nnope\n",
        )
        .unwrap();
        let error = format!("{:#}", reloader.reload().unwrap_err());
        assert!(error.contains("key.pem"), "{error}");
        assert!(Arc::ptr_eq(&endpoints[0].current(), &second));
        assert_eq!(proxy.pool.backends().len(), 2);
    }

    #[test]
    fn the_ticket_mode_and_period_take_a_restart() {
        let running = read_config(&["--https".into(), "127.0.0.1:0".into()]).unwrap();
        let mut new = running.clone();
        new.tickets = crate::config::TicketMode::Keys {
            rotate: std::time::Duration::from_secs(60),
        };
        let refused = fixed_changes(&running, &new).join("\n");
        assert!(
            refused.contains("`ssl-session-tickets` changed") && refused.contains("60s"),
            "{refused}"
        );
        assert!(fixed_changes(&new, &new.clone()).is_empty());
    }

    #[test]
    fn changes_that_need_a_restart_are_refused_and_the_rest_applies() {
        let dir = tempfile::tempdir().unwrap();
        let args = write_ini(dir.path(), "https = 127.0.0.1:0\ncache = 100\n");
        let (reloader, endpoints, proxy) = reloader(args);
        let generated = endpoints[0].current();
        write_ini(
            dir.path(),
            "https = 127.0.0.1:0\nhttps = 127.0.0.1:1\ncache = 200\nstats = 127.0.0.1:0\n\
             http-to = 127.0.0.1:9\n",
        );
        let done = reloader.reload().unwrap();
        let refused = done.refused.join("\n");
        for option in ["`cache`", "`stats`", "`https`: 127.0.0.1:1"] {
            assert!(refused.contains(option), "{option} in {refused}");
        }
        assert!(
            refused.contains("keeping the running value 100"),
            "{refused}"
        );
        assert_eq!(done.refused.len(), 3, "{refused}");
        // The backend list still changed, and the socket kept its generated
        // certificate rather than getting a new one.
        assert_eq!(proxy.pool.backends(), [backend("127.0.0.1:9")]);
        assert_eq!(
            endpoints[0].current().all().next().unwrap().context,
            generated.all().next().unwrap().context
        );

        // The only socket gone from the configuration: it keeps serving.
        write_ini(dir.path(), "https = 127.0.0.1:7\ncache = 100\n");
        let done = reloader.reload().unwrap();
        assert_eq!(done.sockets, 0);
        assert_eq!(done.refused.len(), 2, "{:?}", done.refused);
    }

    #[test]
    fn proxy_protocol_follows_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let args = write_ini(dir.path(), "https = 127.0.0.1:0\n");
        let (reloader, _endpoints, _proxy) = reloader(args);
        let switch = Arc::clone(&reloader.proxy_protocol[0]);
        assert!(!switch.load(Relaxed));
        write_ini(
            dir.path(),
            "https = 127.0.0.1:0\nenable-proxy-protocol = true\n",
        );
        let done = reloader.reload().unwrap();
        assert!(done.proxy_protocol && switch.load(Relaxed));
        assert!(done.refused.is_empty(), "{:?}", done.refused);
        // A broken configuration leaves it as it was.
        write_ini(
            dir.path(),
            "https = 127.0.0.1:0\nenable-proxy-protocol = perhaps\n",
        );
        assert!(reloader.reload().is_err());
        assert!(switch.load(Relaxed));
        write_ini(dir.path(), "https = 127.0.0.1:0\n");
        assert!(!reloader.reload().unwrap().proxy_protocol);
        assert!(!switch.load(Relaxed));
    }

    #[test]
    fn a_broken_configuration_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let args = write_ini(dir.path(), "https = 127.0.0.1:0\nhttp-to = 127.0.0.1:1\n");
        let (reloader, _endpoints, proxy) = reloader(args);
        write_ini(dir.path(), "https = 127.0.0.1:0\nhttp-too = 127.0.0.1:2\n");
        let error = format!("{:#}", reloader.reload().unwrap_err());
        assert!(error.contains("http-too"), "{error}");
        assert_eq!(proxy.pool.backends(), [backend("127.0.0.1:1")]);
    }
}
