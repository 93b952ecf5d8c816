//! `cachet --check`: everything startup would refuse, found without
//! serving, so that a configuration can be validated before a reload or a
//! deployment (like `nginx -t`).
//!
//! Option values were already validated when the [`Config`] was built; this
//! loads what they name: every certificate chain and key (and that they
//! match), every client CA, the access log's file. Listening addresses are
//! not bound: the router being checked is usually running and holds them.

use anyhow::Error;

use crate::config::Config;
use crate::tls::{Endpoint, Sessions};

/// Every problem with the files `config` names; empty when all is well.
pub fn problems(config: &Config) -> Vec<Error> {
    let mut problems = certificate_problems(config);
    if let Some(log) = &config.access_log {
        if let Err(error) = crate::access_log::Sink::open(&log.target) {
            problems.push(error.context("option `access-log`"));
        }
    }
    problems
}

/// Loads every certificate a router would serve: one [`Endpoint`] per
/// https socket, each with every `sni` certificate. Sockets without a
/// certificate get a self-signed one, which cannot fail to load. A bad
/// `sni` certificate, which every socket loads, is reported once.
pub fn certificate_problems(config: &Config) -> Vec<Error> {
    let mut seen = std::collections::HashSet::new();
    config
        .https
        .iter()
        .filter_map(|https| {
            Endpoint::build(
                https,
                &config.sni,
                config.https_session_context.as_deref(),
                Sessions::RustlsDefault,
            )
            .err()
        })
        .filter(|error| seen.insert(format!("{:#}", error.root_cause())))
        .collect()
}

/// `problems` for a person, one per line (not empty: see [`problems`]).
pub fn report(problems: &[Error]) -> String {
    match problems {
        [] => "no problem".to_owned(),
        [one] => format!("{one:#}"),
        all => {
            let mut text = format!("{} problems in the configuration:", all.len());
            for problem in all {
                text.push_str(&format!("\n  - {problem:#}"));
            }
            text
        }
    }
}
