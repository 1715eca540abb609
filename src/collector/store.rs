//! The timeline on disk: embedded SQLite in WAL mode.
//!
//! Invariants:
//! - An event is written (committed) **before** it is visible anywhere: the state owner writes a batch and
//!   only then publishes it to watchers and answers the next query.
//! - Events survive a collector restart; so do the known hosts (with their boot ids, so a reboot during the
//!   collector's downtime is still a reboot) and the open verdicts (so a restart neither forgets nor
//!   re-announces them).
//! - A failed write loses nothing: the batch is kept in memory (bounded) and retried with the next one.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use super::correlate::{Event, EventKind, KnownHost, Scope, Verdict};
use crate::wire::unix_ms;

/// A store failure, naming the database.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", .path.display())]
pub struct StoreError {
    path: PathBuf,
    source: rusqlite::Error,
}

impl StoreError {
    /// The file is damaged or is not a SQLite database.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self.source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        )
    }
}

/// Wraps a SQLite error with the database path.
fn wrap(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError {
        path: path.to_path_buf(),
        source,
    }
}

/// Most events kept in memory while the disk refuses them.
const MAX_UNWRITTEN: usize = 100_000;

/// The database.
pub struct Store {
    path: PathBuf,
    conn: Connection,
    unwritten: Vec<Event>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    scope TEXT NOT NULL,
    region TEXT,
    az TEXT,
    host TEXT,
    check_name TEXT,
    old_status TEXT,
    new_status TEXT,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_at ON events(at_ms);
CREATE INDEX IF NOT EXISTS events_az_at ON events(az, at_ms);
CREATE TABLE IF NOT EXISTS hosts (
    host_id TEXT PRIMARY KEY,
    az TEXT NOT NULL,
    region TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    interval_secs INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS open_verdicts (
    key TEXT PRIMARY KEY,
    json TEXT NOT NULL
);
";

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        // WAL: readers never block the writer. FULL: every commit is fsynced before it returns, so an event
        // is on disk before it is visible (events are rare: transitions, not results).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        let ok: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(err)?;
        if ok != "ok" {
            return Err(err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(format!("quick_check: {ok}")),
            )));
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Store {
            path: path.to_path_buf(),
            conn,
            unwritten: Vec::new(),
        })
    }

    /// Opens the database; when it is corrupt (or not a database at all), moves it aside (with its `-wal`
    /// and `-shm`) to `<path>.corrupt-<unix time>`, says so loudly, and starts a fresh one: a damaged
    /// timeline must not keep the fleet's monitoring down. Returns where the old file went, if it was moved.
    pub fn open_or_recover(path: &Path) -> Result<(Store, Option<PathBuf>), StoreError> {
        match Store::open(path) {
            Ok(s) => Ok((s, None)),
            Err(e) if e.is_corrupt() => {
                let stamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
                tracing::error!(db = %path.display(), error = %e, moved_to = %aside.display(),
                    "the event database is corrupt: moved aside, starting a fresh timeline");
                for suffix in ["", "-wal", "-shm"] {
                    let from = PathBuf::from(format!("{}{suffix}", path.display()));
                    let to = PathBuf::from(format!("{}{suffix}", aside.display()));
                    if from.exists() {
                        std::fs::rename(&from, &to).map_err(|io| StoreError {
                            path: from.clone(),
                            source: rusqlite::Error::SqliteFailure(
                                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                                Some(format!("cannot move the corrupt database aside: {io}")),
                            ),
                        })?;
                    }
                }
                Ok((Store::open(path)?, Some(aside)))
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes events older than `retain` and all but the newest `max_events`. Returns how many went.
    pub fn prune(
        &mut self,
        now: SystemTime,
        retain: Duration,
        max_events: u64,
    ) -> Result<usize, StoreError> {
        let err = wrap(&self.path);
        let cutoff = unix_ms(now.checked_sub(retain).unwrap_or(UNIX_EPOCH)) as i64;
        let old = self
            .conn
            .execute("DELETE FROM events WHERE at_ms < ?1", params![cutoff])
            .map_err(&err)?;
        let excess = self
            .conn
            .execute(
                "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?1",
                params![i64::try_from(max_events).unwrap_or(i64::MAX)],
            )
            .map_err(&err)?;
        Ok(old + excess)
    }

    /// Writes events (and any earlier ones the disk refused), setting their ids. On failure the events stay
    /// queued for the next call and the error is returned.
    pub fn append(&mut self, events: Vec<Event>) -> Result<Vec<Event>, StoreError> {
        let mut batch = std::mem::take(&mut self.unwritten);
        batch.extend(events);
        if batch.is_empty() {
            return Ok(batch);
        }
        match self.write(&mut batch) {
            Ok(()) => Ok(batch),
            Err(e) => {
                let excess = batch.len().saturating_sub(MAX_UNWRITTEN);
                batch.drain(..excess);
                self.unwritten = batch;
                Err(e)
            }
        }
    }

    fn write(&mut self, batch: &mut [Event]) -> Result<(), StoreError> {
        let err = wrap(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO events (at_ms, kind, scope, region, az, host, check_name, old_status, new_status, summary)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(&err)?;
            for e in batch.iter_mut() {
                stmt.execute(params![
                    unix_ms(e.at) as i64,
                    e.kind.as_str(),
                    e.scope.as_str(),
                    e.region,
                    e.az,
                    e.host,
                    e.check,
                    e.old_status,
                    e.new_status,
                    e.summary
                ])
                .map_err(&err)?;
                e.id = tx.last_insert_rowid();
            }
        }
        tx.commit().map_err(&err)
    }

    /// Events at or after `since`, optionally of one AZ (region-wide events included), oldest first.
    pub fn events(
        &self,
        since: Option<SystemTime>,
        az: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let err = wrap(&self.path);
        read_events(&self.conn, since, az, limit).map_err(&err)
    }

    /// Saves the known hosts.
    pub fn save_hosts(&mut self, hosts: &[KnownHost]) -> Result<(), StoreError> {
        let err = wrap(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        for h in hosts {
            tx.execute(
                "INSERT INTO hosts (host_id, az, region, boot_id, interval_secs) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(host_id) DO UPDATE SET az = ?2, region = ?3, boot_id = ?4, interval_secs = ?5",
                params![h.id, h.az, h.region, h.boot_id, h.interval.as_secs() as i64],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// The known hosts.
    pub fn load_hosts(&self) -> Result<Vec<KnownHost>, StoreError> {
        let err = wrap(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT host_id, az, region, boot_id, interval_secs FROM hosts")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(KnownHost {
                    id: r.get(0)?,
                    az: r.get(1)?,
                    region: r.get(2)?,
                    boot_id: r.get(3)?,
                    interval: Duration::from_secs(r.get::<_, i64>(4)?.clamp(1, 3600) as u64),
                })
            })
            .map_err(&err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&err)
    }

    /// Replaces the open verdicts.
    pub fn save_verdicts<'a>(
        &mut self,
        verdicts: impl Iterator<Item = &'a Verdict>,
    ) -> Result<(), StoreError> {
        let err = wrap(&self.path);
        let tx = self.conn.transaction().map_err(&err)?;
        tx.execute("DELETE FROM open_verdicts", []).map_err(&err)?;
        for v in verdicts {
            let json = serde_json::to_string(v).unwrap_or_default();
            tx.execute(
                "INSERT INTO open_verdicts (key, json) VALUES (?1, ?2)",
                params![v.key, json],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// The verdicts that were open; rows that no longer parse are skipped.
    pub fn load_verdicts(&self) -> Result<Vec<Verdict>, StoreError> {
        let err = wrap(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT json FROM open_verdicts")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(&err)?;
        let mut out = Vec::new();
        for r in rows {
            if let Ok(v) = serde_json::from_str(&r.map_err(&err)?) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The newest event id (0 when empty).
    pub fn last_id(&self) -> i64 {
        self.conn
            .query_row("SELECT MAX(id) FROM events", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()
            .ok()
            .flatten()
            .flatten()
            .unwrap_or(0)
    }
}

/// A read-only connection for queries from other tasks (WAL lets them run beside the writer).
pub fn reader(path: &Path) -> Result<Connection, StoreError> {
    let err = |source| StoreError {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    Ok(conn)
}

/// Events at or after `since`, optionally of one AZ (its region-wide events included), oldest first.
pub fn read_events(
    conn: &Connection,
    since: Option<SystemTime>,
    az: Option<&str>,
    limit: usize,
) -> Result<Vec<Event>, rusqlite::Error> {
    let since_ms = since.map(unix_ms).unwrap_or(0) as i64;
    let limit = limit.clamp(1, 100_000) as i64;
    let mut stmt = conn.prepare_cached(
        "SELECT id, at_ms, kind, scope, region, az, host, check_name, old_status, new_status, summary
         FROM events
         WHERE at_ms >= ?1 AND (?2 IS NULL OR az = ?2 OR (az IS NULL AND scope = 'region'))
         ORDER BY at_ms, id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![since_ms, az, limit], row_event)?;
    rows.collect()
}

/// The newest `n` events, oldest first.
pub fn read_newest(conn: &Connection, n: usize) -> Result<Vec<Event>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at_ms, kind, scope, region, az, host, check_name, old_status, new_status, summary
         FROM events ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![n.clamp(1, 1000) as i64], row_event)?;
    let mut out = rows.collect::<Result<Vec<_>, _>>()?;
    out.reverse();
    Ok(out)
}

fn row_event(r: &rusqlite::Row<'_>) -> Result<Event, rusqlite::Error> {
    let kind: String = r.get(2)?;
    let scope: String = r.get(3)?;
    Ok(Event {
        id: r.get(0)?,
        at: UNIX_EPOCH + Duration::from_millis(r.get::<_, i64>(1)?.max(0) as u64),
        kind: EventKind::parse(&kind).unwrap_or(EventKind::VerdictChanged),
        scope: Scope::parse(&scope).unwrap_or(Scope::Host),
        region: r.get(4)?,
        az: r.get(5)?,
        host: r.get(6)?,
        check: r.get(7)?,
        old_status: r.get(8)?,
        new_status: r.get(9)?,
        summary: r.get(10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Status;

    fn event(at: u64, az: &str, summary: &str) -> Event {
        Event {
            id: 0,
            at: UNIX_EPOCH + Duration::from_secs(at),
            kind: EventKind::VerdictOpened,
            scope: Scope::Az,
            region: None,
            az: Some(az.into()),
            host: None,
            check: Some("dns".into()),
            old_status: None,
            new_status: Some("crit".into()),
            summary: summary.into(),
        }
    }

    #[test]
    fn events_hosts_and_verdicts_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        {
            let mut s = Store::open(&path).unwrap();
            let written = s
                .append(vec![
                    event(100, "az1", "a"),
                    event(200, "az2", "b"),
                    event(300, "az1", "c"),
                ])
                .unwrap();
            assert_eq!(written.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3]);
            s.save_hosts(&[KnownHost {
                id: "hv-1".into(),
                az: "az1".into(),
                region: "eu".into(),
                boot_id: "boot-1".into(),
                interval: Duration::from_secs(10),
            }])
            .unwrap();
            let v = Verdict {
                key: "az/az1/dns".into(),
                scope: Scope::Az,
                region: "eu".into(),
                az: Some("az1".into()),
                host: None,
                check: "dns".into(),
                status: Status::Crit,
                hosts: vec!["hv-1".into()],
                summary: "s".into(),
                since: UNIX_EPOCH + Duration::from_secs(100),
                flapping: false,
                recovered_at: None,
            };
            s.save_verdicts([v].iter()).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let all = s.events(None, None, 100).unwrap();
        assert_eq!(
            all.iter().map(|e| e.summary.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let az1 = s
            .events(
                Some(UNIX_EPOCH + Duration::from_secs(150)),
                Some("az1"),
                100,
            )
            .unwrap();
        assert_eq!(
            az1.iter().map(|e| e.summary.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        assert_eq!(s.load_hosts().unwrap()[0].boot_id, "boot-1");
        assert_eq!(s.load_verdicts().unwrap()[0].key, "az/az1/dns");
        assert_eq!(s.last_id(), 3);
        let r = reader(&path).unwrap();
        assert_eq!(read_events(&r, None, None, 2).unwrap().len(), 2);
    }

    #[test]
    fn a_failed_write_keeps_the_events_for_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let mut s = Store::open(&path).unwrap();
        s.conn.execute_batch("DROP TABLE events").unwrap();
        assert!(s.append(vec![event(1, "az1", "kept")]).is_err());
        s.conn.execute_batch(SCHEMA).unwrap();
        let written = s.append(vec![event(2, "az1", "next")]).unwrap();
        assert_eq!(
            written
                .iter()
                .map(|e| e.summary.as_str())
                .collect::<Vec<_>>(),
            ["kept", "next"]
        );
    }

    #[test]
    fn retention_keeps_recent_and_at_most_max_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("e.db")).unwrap();
        let day = 86_400;
        let now = UNIX_EPOCH + Duration::from_secs(100 * day);
        let events: Vec<Event> = (0..20)
            .map(|i| event(90 * day + i * 1000, "az1", &format!("e{i}")))
            .chain([event(day, "az1", "ancient")])
            .collect();
        s.append(events).unwrap();
        let gone = s.prune(now, Duration::from_secs(30 * day), 15).unwrap();
        assert_eq!(
            gone, 6,
            "the ancient one by age, then the oldest 5 beyond 15"
        );
        let left = s.events(None, None, 100).unwrap();
        assert_eq!(left.len(), 15);
        assert_eq!(left[0].summary, "e5");
        assert_eq!(left[14].summary, "e19");
    }

    #[test]
    fn a_corrupt_database_is_moved_aside_and_a_fresh_one_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        std::fs::write(
            &path,
            b"this is not a database, it is a file the disk mangled".repeat(200),
        )
        .unwrap();
        assert!(Store::open(&path).is_err_and(|e| e.is_corrupt()));
        let (mut s, moved) = Store::open_or_recover(&path).unwrap();
        let moved = moved.expect("moved aside");
        assert!(
            moved.to_string_lossy().contains("events.db.corrupt-"),
            "{}",
            moved.display()
        );
        assert!(
            std::fs::read(&moved)
                .unwrap()
                .starts_with(b"this is not a database")
        );
        s.append(vec![event(1, "az1", "fresh")]).unwrap();
        assert_eq!(s.events(None, None, 10).unwrap().len(), 1);
    }
}
