//! The gRPC query service: zones, the timeline, and a live stream of new events.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::correlate::Event;
use super::state::Handle;
use super::store;
use crate::pb;
use crate::wire;

/// The service.
pub struct QueryService {
    state: Handle,
    db: PathBuf,
    events: broadcast::Sender<Event>,
}

impl QueryService {
    /// A service over `state`, reading events from `db`, following `events`.
    pub fn new(state: Handle, db: PathBuf, events: broadcast::Sender<Event>) -> QueryService {
        QueryService { state, db, events }
    }
}

/// The Query service's gate: with TLS, a client certificate from the CA or the API bearer token.
pub fn authorize(auth: &super::serve::Auth, req: Request<()>) -> Result<Request<()>, Status> {
    if !auth.required || req.peer_certs().is_some_and(|c| !c.is_empty()) {
        return Ok(req);
    }
    let bearer = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth.bearer_ok(bearer) {
        Ok(req)
    } else {
        Err(Status::unauthenticated(
            "a client certificate from client-ca, or authorization: Bearer <api token>",
        ))
    }
}

/// Reads events from the database on the blocking pool (WAL: beside the writer, never blocking it).
pub async fn load_events(
    db: PathBuf,
    since: Option<std::time::SystemTime>,
    az: Option<String>,
    limit: usize,
) -> Result<Vec<Event>, String> {
    tokio::task::spawn_blocking(move || {
        let conn = store::reader(&db).map_err(|e| e.to_string())?;
        store::read_events(&conn, since, az.as_deref(), limit).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The newest `n` events, oldest first, read on the blocking pool.
pub async fn load_newest(db: PathBuf, n: usize) -> Result<Vec<Event>, String> {
    tokio::task::spawn_blocking(move || {
        let conn = store::reader(&db).map_err(|e| e.to_string())?;
        store::read_newest(&conn, n).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

#[tonic::async_trait]
impl pb::query_server::Query for QueryService {
    async fn zones(
        &self,
        request: Request<pb::ZonesRequest>,
    ) -> Result<Response<pb::ZonesReply>, Status> {
        let az = request.into_inner().az;
        let view = self
            .state
            .query(move |s| s.engine.zones(az.as_deref()))
            .await
            .ok_or_else(|| Status::unavailable("collector state unavailable"))?;
        Ok(Response::new(wire::zones_to_pb(&view)))
    }

    async fn events(
        &self,
        request: Request<pb::EventsRequest>,
    ) -> Result<Response<pb::EventsReply>, Status> {
        let r = request.into_inner();
        let since = r
            .since_unix_ms
            .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms));
        let limit = if r.limit == 0 { 1000 } else { r.limit as usize };
        let events = load_events(self.db.clone(), since, r.az, limit)
            .await
            .map_err(Status::internal)?;
        Ok(Response::new(pb::EventsReply {
            events: events.iter().map(wire::event_to_pb).collect(),
        }))
    }

    type WatchEventsStream = Pin<Box<dyn Stream<Item = Result<pb::TimelineEvent, Status>> + Send>>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let az = request.into_inner().az;
        let mut rx = self.events.subscribe();
        let stream = async_stream(move |tx| async move {
            loop {
                match rx.recv().await {
                    Ok(e) => {
                        let wanted = match (&az, &e.az) {
                            (None, _) => true,
                            (Some(a), Some(b)) => a == b,
                            (Some(_), None) => e.scope == super::correlate::Scope::Region,
                        };
                        if wanted && tx.send(Ok(wire::event_to_pb(&e))).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::resource_exhausted(format!(
                                "watcher fell {n} events behind; resume with Events"
                            ))))
                            .await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task through a small channel.
fn async_stream<F, Fut>(
    f: F,
) -> Pin<Box<dyn Stream<Item = Result<pb::TimelineEvent, Status>> + Send>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::TimelineEvent, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
