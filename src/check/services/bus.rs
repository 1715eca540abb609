//! A small hand-written proxy for the part of systemd's D-Bus API the check reads
//! (`org.freedesktop.systemd1`, see `org.freedesktop.systemd1(5)`): `Manager.ListUnitsByNames` and
//! `org.freedesktop.DBus.Properties.Get` of a few properties. Plain method calls on one zbus connection,
//! polled; no signal subscription, no generated proxy. The property reads of a cycle go out as one batch
//! (`get_many`): sent together, replies matched by serial.

use std::time::Duration;

use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use crate::check::{Failure, UnknownReason};

const DEST: &str = "org.freedesktop.systemd1";
/// The manager's object path.
pub const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
/// `org.freedesktop.systemd1.Manager`.
pub const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
/// `org.freedesktop.systemd1.Unit`.
pub const UNIT: &str = "org.freedesktop.systemd1.Unit";
/// `org.freedesktop.systemd1.Service`.
pub const SERVICE: &str = "org.freedesktop.systemd1.Service";

/// One row of `ListUnitsByNames` (`a(ssssssouso)`): name, description, load state, active state, sub state,
/// followed unit, object path, job id, job type, job path.
type UnitRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    OwnedObjectPath,
    u32,
    String,
    OwnedObjectPath,
);

/// A unit as `ListUnitsByNames` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedUnit {
    /// Unit name.
    pub name: String,
    /// `LoadState`.
    pub load_state: String,
    /// `ActiveState`.
    pub active_state: String,
    /// `SubState`.
    pub sub_state: String,
    /// Its object path, for property reads.
    pub path: String,
}

/// One property to read: object path, interface, name.
#[derive(Debug, Clone, Copy)]
pub struct Prop<'a> {
    /// Object path of the unit (or the manager).
    pub path: &'a str,
    /// Interface, [`UNIT`] or [`SERVICE`].
    pub iface: &'a str,
    /// Property name.
    pub name: &'a str,
}

/// A connection to the bus systemd is on.
pub struct Systemd {
    conn: zbus::Connection,
}

/// Where the bus is, for messages.
pub fn describe_bus(bus: &str) -> String {
    match bus {
        "system" => "the system bus".into(),
        "session" => "the session bus".into(),
        a => format!("the bus at {a}"),
    }
}

impl Systemd {
    /// Connects to `bus` (`system`, `session` or an address); every method call times out after `timeout`.
    pub async fn connect(bus: &str, timeout: Duration) -> Result<Systemd, Failure> {
        let builder = match bus {
            "system" => zbus::connection::Builder::system(),
            "session" => zbus::connection::Builder::session(),
            addr => zbus::connection::Builder::address(addr),
        };
        let conn = builder
            .map(|b| b.method_timeout(timeout))
            .map_err(|e| failure(&format!("cannot use {}", describe_bus(bus)), &e))?;
        let conn = tokio::time::timeout(timeout, conn.build())
            .await
            .map_err(|_| {
                Failure::new(
                    UnknownReason::TimedOut,
                    format!(
                        "no answer from {} within {}",
                        describe_bus(bus),
                        crate::util::fmt_duration(timeout)
                    ),
                )
            })?
            .map_err(|e| failure(&format!("cannot connect to {}", describe_bus(bus)), &e))?;
        Ok(Systemd { conn })
    }

    /// `Manager.ListUnitsByNames`: one row per name, loaded or not (`not-found`), in the order asked.
    pub async fn list_units_by_names(&self, names: &[String]) -> Result<Vec<ListedUnit>, Failure> {
        let reply = self
            .conn
            .call_method(
                Some(DEST),
                MANAGER_PATH,
                Some(MANAGER),
                "ListUnitsByNames",
                &(names,),
            )
            .await
            .map_err(|e| failure("systemd ListUnitsByNames", &e))?;
        let rows: Vec<UnitRow> = reply
            .body()
            .deserialize()
            .map_err(|e| malformed("systemd ListUnitsByNames", &e))?;
        Ok(rows
            .into_iter()
            .map(|r| ListedUnit {
                name: r.0,
                load_state: r.2,
                active_state: r.3,
                sub_state: r.4,
                path: r.6.as_str().to_owned(),
            })
            .collect())
    }

    /// `Properties.Get` of many properties in one batch: every call is sent, then the replies are read as
    /// they come (matched by serial), so a cycle costs one round trip instead of one per property. The
    /// values come back in the order asked; the first error reply fails the batch.
    pub async fn get_many(&self, props: &[Prop<'_>]) -> Result<Vec<OwnedValue>, Failure> {
        use tokio_stream::StreamExt;
        if props.is_empty() {
            return Ok(Vec::new());
        }
        // Subscribed before the first send, so no reply can pass unseen.
        let mut stream = zbus::MessageStream::from(&self.conn);
        let mut serials = Vec::with_capacity(props.len());
        for p in props {
            let msg = zbus::Message::method_call(p.path, "Get")
                .and_then(|b| b.destination(DEST))
                .and_then(|b| b.interface(PROPERTIES))
                .and_then(|b| b.build(&(p.iface, p.name)))
                .map_err(|e| failure("systemd Properties.Get", &e))?;
            serials.push(msg.primary_header().serial_num());
            self.conn
                .send(&msg)
                .await
                .map_err(|e| failure("systemd Properties.Get", &e))?;
        }
        let mut values: Vec<Option<OwnedValue>> = vec![None; props.len()];
        let mut left = props.len();
        while left > 0 {
            let Some(msg) = stream.next().await else {
                return Err(Failure::new(
                    UnknownReason::Error,
                    "systemd Properties.Get: the bus connection closed",
                ));
            };
            let msg = msg.map_err(|e| failure("systemd Properties.Get", &e))?;
            let Some(i) = msg
                .header()
                .reply_serial()
                .and_then(|r| serials.iter().position(|s| *s == r))
            else {
                continue;
            };
            let p = &props[i];
            let what = format!("systemd {}.{} of {}", p.iface, p.name, p.path);
            match msg.message_type() {
                zbus::message::Type::MethodReturn => {
                    let v = msg
                        .body()
                        .deserialize::<OwnedValue>()
                        .map_err(|e| malformed(&what, &e))?;
                    if values[i].replace(v).is_none() {
                        left -= 1;
                    }
                }
                zbus::message::Type::Error => {
                    return Err(failure(&what, &zbus::Error::from(msg)));
                }
                _ => {}
            }
        }
        Ok(values.into_iter().flatten().collect())
    }
}

/// A reply that did not have the expected type.
fn malformed(what: &str, e: &dyn std::fmt::Display) -> Failure {
    Failure::new(
        UnknownReason::Malformed,
        format!("{what}: unexpected reply: {e}"),
    )
}

/// A D-Bus error as a failure of the right kind: a timeout, a refused permission, no systemd on the bus.
fn failure(what: &str, e: &zbus::Error) -> Failure {
    let reason = match e {
        zbus::Error::InputOutput(io) => match io.kind() {
            std::io::ErrorKind::TimedOut => UnknownReason::TimedOut,
            std::io::ErrorKind::PermissionDenied => UnknownReason::NoPermission,
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                UnknownReason::Unsupported
            }
            _ => UnknownReason::Error,
        },
        zbus::Error::MethodError(name, _, _) if name.as_str().ends_with(".AccessDenied") => {
            UnknownReason::NoPermission
        }
        zbus::Error::MethodError(name, _, _) if name.as_str().ends_with(".ServiceUnknown") => {
            UnknownReason::Unsupported
        }
        _ => UnknownReason::Error,
    };
    Failure::new(reason, format!("{what}: {e}"))
}
