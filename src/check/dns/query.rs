//! One query to one resolver: a connected UDP socket (TCP when truncated), one deadline, the outcome classified.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{DnsOutcome, DnsResult};

/// Why one query failed before an answer came.
enum QueryError {
    Refused,
    Timeout,
    Other(String),
}

fn io_error(e: std::io::Error) -> QueryError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => QueryError::Refused,
        std::io::ErrorKind::TimedOut => QueryError::Timeout,
        _ => QueryError::Other(e.to_string()),
    }
}

fn query_message(name: &Name, rtype: RecordType) -> (u16, Vec<u8>, Result<(), String>) {
    let id = fastrand::u16(..);
    let mut msg = Message::query();
    msg.metadata.id = id;
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name.clone(), rtype));
    match msg.to_vec() {
        Ok(bytes) => (id, bytes, Ok(())),
        Err(e) => (id, Vec::new(), Err(e.to_string())),
    }
}

pub(super) fn answer_for(buf: &[u8], id: u16) -> Option<Result<Message, String>> {
    match Message::from_vec(buf) {
        Ok(m) if m.metadata.id == id && m.metadata.message_type == MessageType::Response => {
            Some(Ok(m))
        }
        Ok(_) => None, // a stray datagram: keep waiting
        Err(e) => Some(Err(format!("malformed reply: {e}"))),
    }
}

/// One query over a connected UDP socket; on truncation, once more over TCP.
async fn query(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, QueryError> {
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.map_err(io_error)?;
    sock.connect(server).await.map_err(io_error)?;
    sock.send(bytes).await.map_err(io_error)?;
    let mut buf = vec![0u8; 4096];
    let msg = loop {
        let n = sock.recv(&mut buf).await.map_err(io_error)?;
        match answer_for(&buf[..n], id) {
            Some(Ok(m)) => break m,
            Some(Err(e)) => return Err(QueryError::Other(e)),
            None => continue,
        }
    };
    if !msg.metadata.truncation {
        return Ok(msg);
    }
    let mut tcp = tokio::net::TcpStream::connect(server)
        .await
        .map_err(io_error)?;
    let len = u16::try_from(bytes.len()).map_err(|_| QueryError::Other("query too long".into()))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    tcp.write_all(&framed).await.map_err(io_error)?;
    let n = tcp.read_u16().await.map_err(io_error)? as usize;
    let mut reply = vec![0u8; n];
    tcp.read_exact(&mut reply).await.map_err(io_error)?;
    match answer_for(&reply, id) {
        Some(Ok(m)) => Ok(m),
        Some(Err(e)) => Err(QueryError::Other(e)),
        None => Err(QueryError::Other(
            "TCP reply does not match the query".into(),
        )),
    }
}

/// The response code as dig prints it: NOERROR, NXDOMAIN, SERVFAIL…
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

fn rdata_text(d: &RData) -> String {
    match d {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        other => other.to_string(),
    }
}

/// What a query must get to count as `ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Any NOERROR or NXDOMAIN answer: the resolver is alive (the default `localhost.` probe).
    Alive,
    /// Records of the queried type.
    Records,
    /// Records containing all these values.
    Expect(Vec<String>),
}

/// Classifies an answer. Pure.
pub fn classify(
    msg: &Message,
    rtype: RecordType,
    want: &Want,
) -> (DnsOutcome, Vec<String>, Option<String>) {
    let answers: Vec<String> = msg
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype)
        .map(|r| rdata_text(&r.data))
        .collect();
    let rcode = msg.metadata.response_code;
    if *want == Want::Alive && matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
        return (DnsOutcome::Ok, answers, None);
    }
    let expect = match want {
        Want::Expect(e) => Some(e.as_slice()),
        _ => None,
    };
    let outcome = match rcode {
        ResponseCode::NoError => {
            if answers.is_empty() {
                return (
                    DnsOutcome::WrongAnswer,
                    answers,
                    Some(format!("no {rtype} records (NODATA)")),
                );
            }
            if let Some(expected) = expect {
                let missing: Vec<&String> = expected
                    .iter()
                    .filter(|e| !answers.iter().any(|a| same_data(a, e)))
                    .collect();
                if !missing.is_empty() {
                    let err = format!("got {}, expected {}", answers.join(" "), expected.join(" "));
                    return (DnsOutcome::WrongAnswer, answers, Some(err));
                }
            }
            DnsOutcome::Ok
        }
        ResponseCode::ServFail => DnsOutcome::Servfail,
        ResponseCode::NXDomain => DnsOutcome::Nxdomain,
        ResponseCode::Refused => DnsOutcome::RefusedRcode,
        other => {
            return (
                DnsOutcome::Error,
                answers,
                Some(format!("rcode {}", rcode_name(other))),
            );
        }
    };
    (outcome, answers, None)
}

fn same_data(answer: &str, expected: &str) -> bool {
    match (answer.parse::<IpAddr>(), expected.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => answer
            .trim_end_matches('.')
            .eq_ignore_ascii_case(expected.trim_end_matches('.')),
    }
}

/// Runs one (resolver, name) probe under the deadline.
pub(super) async fn probe(
    resolver: SocketAddr,
    label: String,
    name: Name,
    rtype: RecordType,
    want: Want,
    timeout: Duration,
) -> DnsResult {
    let (id, bytes, built) = query_message(&name, rtype);
    let start = Instant::now();
    let mut result = DnsResult {
        resolver: label,
        name: name.to_string(),
        record_type: rtype.to_string(),
        outcome: DnsOutcome::Error,
        latency_ms: 0.0,
        answers: Vec::new(),
        rcode: None,
        error: None,
    };
    if let Err(e) = built {
        result.error = Some(e);
        return result;
    }
    let answer = tokio::time::timeout(timeout, query(resolver, &bytes, id)).await;
    result.latency_ms = (start.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    match answer {
        Err(_) | Ok(Err(QueryError::Timeout)) => result.outcome = DnsOutcome::Timeout,
        Ok(Err(QueryError::Refused)) => result.outcome = DnsOutcome::Refused,
        Ok(Err(QueryError::Other(e))) => result.error = Some(e),
        Ok(Ok(msg)) => {
            let (outcome, answers, error) = classify(&msg, rtype, &want);
            result.outcome = outcome;
            result.answers = answers;
            result.error = error;
            result.rcode = Some(rcode_name(msg.metadata.response_code));
        }
    }
    result
}
