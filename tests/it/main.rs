//! Every integration test of hvprobe, in one binary (one link, one copy of the shared helpers): real
//! binaries, real sockets, real DNS servers, real wireguard-go peers in network namespaces, and the corpus of
//! real kernel data. `tests/run.sh` installs what they need; a missing prerequisite is a failure.

#[path = "../support/mod.rs"]
mod support;

mod agent_collector;
mod alertmanager;
mod cli_check;
mod cli_io;
mod cli_md_raid;
mod corpus_md_raid;
mod corpus_proc;
mod corpus_wireguard;
mod deb;
mod dns_real_servers;
mod fleet_correlation;
mod hostile_clients;
mod oracle_node_exporter;
mod prometheus_rules;
mod proto_compat;
mod rates_across_cycles;
mod reach_netns;
mod scenarios;
mod services_systemd;
mod status_page;
mod tls;
mod wireguard_conntrack;
mod wireguard_real;
