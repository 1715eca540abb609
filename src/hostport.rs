//! `host:port` as operators write it in configs: an address, dialled directly with no DNS involved, or a
//! name, resolved each time it is dialled (DNS may be what is broken: prefer addresses for what must work
//! during an incident).

use std::net::SocketAddr;
use std::time::Duration;

/// Where something listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPort {
    /// An address: no DNS involved.
    Addr(SocketAddr),
    /// A name to resolve, and its port.
    Name(String, u16),
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPort::Addr(a) => write!(f, "{a}"),
            HostPort::Name(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

impl HostPort {
    /// `10.0.0.5:7400`, `[fd00::5]:7400` or `collector.az1.example:7400`.
    pub fn parse(s: &str) -> Result<HostPort, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            if a.port() == 0 {
                return Err("bad port 0".into());
            }
            return Ok(HostPort::Addr(a));
        }
        let (host, port) = s.rsplit_once(':').ok_or("expected host:port")?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("bad port {port:?}"))?;
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !valid {
            return Err(format!("{host:?} is neither an IP address nor a host name"));
        }
        Ok(HostPort::Name(host.to_owned(), port))
    }

    /// The addresses to dial: the address itself, or what the name resolves to within `within`.
    pub async fn resolve(&self, within: Duration) -> Result<Vec<SocketAddr>, String> {
        match self {
            HostPort::Addr(a) => Ok(vec![*a]),
            HostPort::Name(host, port) => {
                match tokio::time::timeout(within, tokio::net::lookup_host((host.as_str(), *port)))
                    .await
                {
                    Ok(Ok(addrs)) => Ok(addrs.collect()),
                    Ok(Err(e)) => Err(format!("cannot resolve {host}: {e}")),
                    Err(_) => Err(format!(
                        "cannot resolve {host}: no answer within {} s",
                        within.as_secs()
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_names_and_what_is_neither() {
        assert_eq!(
            HostPort::parse("[fd00::5]:7400"),
            Ok(HostPort::Addr("[fd00::5]:7400".parse().unwrap()))
        );
        assert_eq!(
            HostPort::parse("am-1.az1.example:9093"),
            Ok(HostPort::Name("am-1.az1.example".into(), 9093))
        );
        for (bad, why) in [
            ("am", "expected host:port"),
            ("am:0", "bad port"),
            ("10.0.0.5:0", "bad port"),
            ("am:http", "bad port"),
            (":9093", "neither"),
            ("a m:9093", "neither"),
            ("fd00::5:7400", "neither"),
            ("a..b:1", "neither"),
        ] {
            let e = HostPort::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn an_address_resolves_to_itself_and_localhost_to_loopback() {
        let a = HostPort::parse("127.0.0.1:9").unwrap();
        assert_eq!(
            a.resolve(Duration::from_secs(1)).await.unwrap(),
            vec!["127.0.0.1:9".parse().unwrap()]
        );
        let n = HostPort::parse("localhost:9").unwrap();
        let addrs = n.resolve(Duration::from_secs(5)).await.unwrap();
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 9),
            "{addrs:?}"
        );
    }
}
