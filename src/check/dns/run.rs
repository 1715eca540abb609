//! The I/O: the resolver list from resolv.conf and the config, every (resolver, name) probed in parallel.

use std::net::SocketAddr;
use std::time::Duration;

use super::query::{Want, probe};
use super::resolv_conf::{nameserver_addr, parse_resolv_conf};
use hickory_proto::rr::RecordType;

use super::config::same_name;
use super::{
    DEFAULT_NAME, DnsConfig, DnsResult, Observation, ResolvConf, evaluate, parse_name,
    parse_record_type, parse_resolver,
};
use crate::check::{BoxFuture, Check, CheckKind, Context, Outcome};
use crate::host::HostRoot;

/// The resolvers to probe: resolv.conf entries then configured ones, without duplicates.
fn resolver_list(
    root: &HostRoot,
    cfg: &DnsConfig,
) -> (ResolvConf, Vec<(String, SocketAddr)>, Vec<String>) {
    let mut notes = Vec::new();
    let mut list: Vec<(String, SocketAddr)> = Vec::new();
    let mut rc = ResolvConf::default();
    if cfg.use_resolv_conf {
        let path = root.path(&cfg.resolv_conf);
        match root.read(&cfg.resolv_conf) {
            Ok(text) => {
                rc = parse_resolv_conf(&text);
                for p in &rc.problems {
                    notes.push(format!("{}: {p}", path.display()));
                }
                if rc.nameservers.is_empty() {
                    notes.push(format!("{}: no nameserver lines", path.display()));
                }
                for ns in &rc.nameservers {
                    match nameserver_addr(root, ns) {
                        Ok(addr) => list.push((display_addr(addr, ns), addr)),
                        Err(e) => notes.push(format!("{}: {e}", path.display())),
                    }
                }
            }
            Err(e) => notes.push(e.to_string()),
        }
    }
    for r in &cfg.resolvers {
        // Validated at load time; an entry that still fails is reported, not fatal.
        match parse_resolver(r) {
            Ok(addr) if !list.iter().any(|(_, a)| *a == addr) => {
                list.push((display_addr(addr, r), addr))
            }
            Ok(_) => {}
            Err(e) => notes.push(format!("resolvers: {r:?}: {e}")),
        }
    }
    (rc, list, notes)
}

/// `127.0.0.1:53`, `[::1]:5353`, `[fe80::1%eth0]:53` (the scope as written).
pub(super) fn display_addr(addr: SocketAddr, written: &str) -> String {
    match (addr, written.split_once('%')) {
        (SocketAddr::V6(v6), Some((_, scope))) if !written.starts_with('[') => {
            format!("[{}%{scope}]:{}", v6.ip(), v6.port())
        }
        _ => addr.to_string(),
    }
}

/// The `dns` check.
#[derive(Debug)]
pub struct DnsCheck {
    cfg: DnsConfig,
}

impl DnsCheck {
    /// A check with this configuration.
    pub fn new(cfg: DnsConfig) -> Self {
        DnsCheck { cfg }
    }

    async fn observe(&mut self, ctx: &Context) -> Outcome {
        let cfg = self.cfg.clone();
        let (rc, resolvers, notes) = ctx.blocking(move |root| resolver_list(root, &cfg)).await;
        let rtype = parse_record_type(&self.cfg.record_type).unwrap_or(RecordType::A);
        let liveness = self.cfg.names.is_empty();
        let names: Vec<String> = if liveness {
            vec![DEFAULT_NAME.to_owned()]
        } else {
            self.cfg.names.clone()
        };
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        let mut tasks = tokio::task::JoinSet::new();
        let mut notes = notes;
        let mut order = Vec::new();
        for (label, addr) in &resolvers {
            for n in &names {
                let name = match parse_name(n) {
                    Ok(name) => name,
                    Err(e) => {
                        notes.push(format!("names: {n:?}: {e}"));
                        continue;
                    }
                };
                let want = match self.cfg.expect.iter().find(|(k, _)| same_name(k, n)) {
                    Some((_, v)) => Want::Expect(v.clone()),
                    None if liveness => Want::Alive,
                    None => Want::Records,
                };
                let idx = order.len();
                order.push(idx);
                let (label, addr) = (label.clone(), *addr);
                tasks.spawn(
                    async move { (idx, probe(addr, label, name, rtype, want, timeout).await) },
                );
            }
        }
        let mut results: Vec<(usize, DnsResult)> = Vec::with_capacity(order.len());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(r) => results.push(r),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {}
            }
        }
        results.sort_by_key(|(i, _)| *i);
        notes.dedup();
        let obs = Observation {
            resolv_conf: rc,
            results: results.into_iter().map(|(_, r)| r).collect(),
            notes,
        };
        evaluate(&obs, &self.cfg)
    }
}

impl Check for DnsCheck {
    fn kind(&self) -> CheckKind {
        CheckKind::Dns
    }

    /// The per-query deadline plus a margin: every query runs in parallel under its own deadline, so the
    /// whole check ends on time even when every resolver blackholes.
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms + 500)
    }

    fn run<'a>(&'a mut self, ctx: &'a Context) -> BoxFuture<'a, Outcome> {
        Box::pin(self.observe(ctx))
    }
}
