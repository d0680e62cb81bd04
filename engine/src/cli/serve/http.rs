//! The HTTP side of `wasce serve` (hyper, HTTP/1.1, on a current-thread tokio runtime).
//!
//! Routes:
//! * `POST /run/NAME`: a JSON object (one run) or an array of them (a batch, run in parallel
//!   on the workers, answered in order). Answers 200 with the run's JSON (whatever the program
//!   did: its verdict says), 400 for a body that is not such JSON, 404 for an unknown module,
//!   413 for a body over `--max-request`, 503 when the queue is full or no instance is left.
//! * `ANY /wagi/NAME[/PATH][?QUERY]`: the module as a WAGI handler: the request as CGI
//!   environment variables and stdin, the response from its stdout (CGI headers, a blank
//!   line, the body).
//! * `GET /healthz`, `GET /metrics`.

use super::metrics::Metrics;
use super::{Job, Queue, Served};
use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasce_engine::warm::{RunRequest, RunResult};
use wasce_engine::Error;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Most runs in one batch.
const MAX_BATCH: usize = 256;

pub enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener, std::path::PathBuf),
}

impl Listener {
    pub fn bind(addr: &str) -> Result<Listener, Error> {
        let listener = if let Some(path) = addr.strip_prefix("unix:") {
            let path = std::path::PathBuf::from(path);
            // Replace a stale socket, never another kind of file.
            if let Ok(m) = std::fs::symlink_metadata(&path) {
                use std::os::unix::fs::FileTypeExt;
                if !m.file_type().is_socket() {
                    return Err(Error::Usage(format!("--listen {addr}: {} exists and is not a socket", path.display())));
                }
                let _ = std::fs::remove_file(&path);
            }
            let l = std::os::unix::net::UnixListener::bind(&path).map_err(|e| Error::Usage(format!("--listen {addr}: {e}")))?;
            l.set_nonblocking(true).map_err(|e| Error::Resource(e.to_string()))?;
            Listener::Unix(l, path)
        } else {
            let l = std::net::TcpListener::bind(addr).map_err(|e| Error::Usage(format!("--listen {addr}: {e}")))?;
            l.set_nonblocking(true).map_err(|e| Error::Resource(e.to_string()))?;
            Listener::Tcp(l)
        };
        Ok(listener)
    }

    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l.local_addr().map_or_else(|_| "?".into(), |a| format!("http://{a}")),
            Listener::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }
}

pub struct State {
    /// Connections open at once (past it, accepting waits).
    connections: Arc<tokio::sync::Semaphore>,
    served: Arc<Vec<Served>>,
    queue: Arc<Queue>,
    max_request: usize,
    log: bool,
    workers: usize,
    metrics: Mutex<Metrics>,
}

impl State {
    pub fn new(served: Arc<Vec<Served>>, queue: Arc<Queue>, max_request: usize, log: bool, workers: usize, max_connections: usize) -> Arc<State> {
        let connections = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
        Arc::new(State { connections, served, queue, max_request, log, workers, metrics: Mutex::new(Metrics::default()) })
    }

    fn metrics(&self) -> std::sync::MutexGuard<'_, Metrics> {
        self.metrics.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serve forever. `confine` runs once the runtime and the listener are set up, before the
/// first connection is accepted.
pub fn run(listener: Listener, state: Arc<State>, confine: Option<impl FnOnce() -> Result<(), Error>>) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build().map_err(|e| Error::Resource(format!("cannot start the event loop: {e}")))?;
    rt.block_on(async move {
        enum L {
            Tcp(tokio::net::TcpListener),
            Unix(tokio::net::UnixListener),
        }
        let l = match listener {
            Listener::Tcp(l) => L::Tcp(tokio::net::TcpListener::from_std(l).map_err(|e| Error::Resource(e.to_string()))?),
            Listener::Unix(l, _) => L::Unix(tokio::net::UnixListener::from_std(l).map_err(|e| Error::Resource(e.to_string()))?),
        };
        if let Some(confine) = confine {
            confine()?;
        }
        loop {
            // A connection slot first: past `--max-connections`, new connections wait in the
            // kernel's backlog.
            let Ok(permit) = state.connections.clone().acquire_owned().await else { return Ok(()) };
            let accepted = match &l {
                L::Tcp(l) => l.accept().await.map(|(s, peer)| {
                    let _ = s.set_nodelay(true);
                    serve_connection(s, peer.to_string(), state.clone(), permit)
                }),
                L::Unix(l) => l.accept().await.map(|(s, _)| serve_connection(s, "unix".into(), state.clone(), permit)),
            };
            if let Err(e) = accepted {
                // Out of fds and the like: back off a little rather than spin.
                eprintln!("wasce serve: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
}

/// How long a client may take to send a request's head (slow clients hold a connection slot).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

fn serve_connection<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static>(stream: S, peer: String, state: Arc<State>, permit: tokio::sync::OwnedSemaphorePermit) {
    let io = hyper_util::rt::TokioIo::new(stream);
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req| {
            let (state, peer) = (state.clone(), peer.clone());
            async move { Ok::<_, Infallible>(handle(&state, req, &peer).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(io, service)
            .await;
        drop(permit);
    });
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_response(status: StatusCode, v: &Value) -> Resp {
    respond(status, "application/json", format!("{v}\n"))
}

fn error(status: StatusCode, message: impl Into<String>) -> Resp {
    json_response(status, &json!({ "error": message.into() }))
}

async fn handle(state: &State, req: Request<Incoming>, peer: &str) -> Resp {
    let started = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let (route, resp, summary) = route(state, req).await;
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    state.metrics().request(&route, status, elapsed.as_secs_f64());
    if state.log {
        eprintln!("wasce serve: {peer} {method} {path} {status} {:.3}ms{}", elapsed.as_secs_f64() * 1e3, summary.map_or(String::new(), |s| format!(" {s}")));
    }
    resp
}

/// The response, the route for the metrics (module name or path) and a summary for the log.
async fn route(state: &State, req: Request<Incoming>) -> (String, Resp, Option<String>) {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(3, '/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["healthz"]) => {
            let alive: usize = state.served.iter().map(|s| s.instances.load(Ordering::Relaxed)).sum();
            let status = if alive > 0 { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            let modules: serde_json::Map<String, Value> = state.served.iter().map(|s| (s.name.clone(), json!(s.instances.load(Ordering::Relaxed)))).collect();
            ("/healthz".into(), json_response(status, &json!({ "status": if alive > 0 { "ok" } else { "no instances" }, "instances": modules })), None)
        }
        (&Method::GET, ["metrics"]) => {
            let pools: Vec<(String, usize)> = state.served.iter().map(|s| (s.name.clone(), s.instances.load(Ordering::Relaxed))).collect();
            let queued = state.queue.jobs.lock().unwrap_or_else(|e| e.into_inner()).len();
            let text = state.metrics().render(&pools, queued, state.workers);
            ("/metrics".into(), respond(StatusCode::OK, "text/plain; version=0.0.4", text), None)
        }
        (_, ["run", name]) => {
            let Some(module) = state.served.iter().position(|s| s.name == *name) else {
                return ("(unknown)".into(), error(StatusCode::NOT_FOUND, format!("no module named `{name}`")), None);
            };
            let name = name.to_string();
            if req.method() != Method::POST {
                return (name, error(StatusCode::METHOD_NOT_ALLOWED, "use POST"), None);
            }
            let (resp, summary) = run_json(state, module, &name, req).await;
            (name, resp, summary)
        }
        (_, ["wagi", name, ..]) => {
            let Some(module) = state.served.iter().position(|s| s.name == *name) else {
                return ("(unknown)".into(), error(StatusCode::NOT_FOUND, format!("no module named `{name}`")), None);
            };
            let name = name.to_string();
            let (resp, summary) = wagi(state, module, &name, req).await;
            (name, resp, summary)
        }
        _ => ("(unknown)".into(), error(StatusCode::NOT_FOUND, "routes: POST /run/NAME, ANY /wagi/NAME/..., GET /healthz, GET /metrics"), None),
    }
}

async fn body(state: &State, req: Request<Incoming>) -> Result<Bytes, Resp> {
    match Limited::new(req.into_body(), state.max_request).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(error(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is over {} bytes", state.max_request)))
        }
        Err(e) => Err(error(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}"))),
    }
}

/// One run, as JSON. Field names follow Judge0 and Piston where they have one.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RunSpec {
    args: Vec<String>,
    env: std::collections::BTreeMap<String, String>,
    stdin: Option<String>,
    stdin_base64: Option<String>,
    /// Wall-clock limit in milliseconds.
    timeout_ms: Option<u64>,
    /// Judge0's wall and CPU limits in seconds (a run is one thread: both bound its wall time).
    wall_time_limit: Option<f64>,
    cpu_time_limit: Option<f64>,
    fuel: Option<u64>,
    /// Bytes of each linear memory.
    max_memory: Option<u64>,
    /// Judge0's memory limit, in KiB.
    memory_limit: Option<u64>,
    /// Bytes kept of stdout and of stderr each.
    max_output: Option<usize>,
    expected_output: Option<String>,
    /// Also answer `stdout_base64` and `stderr_base64` (always done when the output is not UTF-8).
    base64_output: bool,
}

impl RunSpec {
    fn request(&self) -> Result<RunRequest, String> {
        let stdin = match (&self.stdin, &self.stdin_base64) {
            (Some(_), Some(_)) => return Err("give `stdin` or `stdin_base64`, not both".into()),
            (Some(s), None) => s.as_bytes().to_vec(),
            (None, Some(b)) => B64.decode(b).map_err(|e| format!("`stdin_base64`: {e}"))?,
            (None, None) => Vec::new(),
        };
        let secs = |s: f64, what: &str| {
            if s.is_finite() && s > 0.0 && s < 1e9 { Ok(Duration::from_secs_f64(s)) } else { Err(format!("`{what}` must be a positive number of seconds")) }
        };
        let mut timeout = self.timeout_ms.map(Duration::from_millis);
        for (v, what) in [(self.wall_time_limit, "wall_time_limit"), (self.cpu_time_limit, "cpu_time_limit")] {
            if let Some(s) = v {
                let d = secs(s, what)?;
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            }
        }
        if timeout == Some(Duration::ZERO) {
            return Err("`timeout_ms` must be positive".into());
        }
        let max_memory = match (self.max_memory, self.memory_limit) {
            (Some(a), Some(kib)) => Some(a.min(kib.saturating_mul(1024))),
            (a, kib) => a.or(kib.map(|k| k.saturating_mul(1024))),
        };
        Ok(RunRequest {
            args: self.args.clone(),
            env: self.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            stdin,
            timeout,
            fuel: self.fuel,
            max_memory,
            max_output: self.max_output,
        })
    }
}

/// Lines compared without trailing whitespace, and without trailing empty lines (Judge0's
/// convention).
fn normalise(s: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = s.lines().map(str::trim_end).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

fn verdict(r: &RunResult, expected: Option<&str>) -> &'static str {
    let failed = r.trap.is_some() || r.exit_code != Some(0);
    if r.timed_out || r.out_of_fuel {
        "time limit exceeded"
    } else if failed && r.memory_limited {
        "memory limit exceeded"
    } else if failed {
        "runtime error"
    } else {
        match expected {
            Some(e) if normalise(&String::from_utf8_lossy(&r.stdout)) != normalise(e) => "wrong answer",
            _ => "accepted",
        }
    }
}

fn result_json(r: &RunResult, spec: &RunSpec, verdict: &str) -> Value {
    let mut v = json!({
        "exit_code": r.exit_code,
        "trap": r.trap,
        "verdict": verdict,
        "stdout": String::from_utf8_lossy(&r.stdout),
        "stderr": String::from_utf8_lossy(&r.stderr),
        "wall_time_ms": r.wall.as_secs_f64() * 1e3,
        "fuel_used": r.fuel_used,
        "peak_memory_bytes": r.peak_memory,
        "memory_limited": r.memory_limited,
    });
    for (field, bytes) in [("stdout_base64", &r.stdout), ("stderr_base64", &r.stderr)] {
        if spec.base64_output || std::str::from_utf8(bytes).is_err() {
            v[field] = json!(B64.encode(bytes));
        }
    }
    v
}

/// Queue a run and wait for its result.
async fn dispatch(state: &State, module: usize, req: RunRequest) -> Result<RunResult, (StatusCode, String)> {
    if state.served[module].instances.load(Ordering::Relaxed) == 0 {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "no warm instance of this module is left".into()));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    if state.queue.push(Job { module, req, reply: tx }).is_err() {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "too many runs waiting (--queue)".into()));
    }
    match rx.await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) if e.starts_with("limit exceeded") => Err((StatusCode::PAYLOAD_TOO_LARGE, e)),
        Ok(Err(e)) => Err((StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(_) => Err((StatusCode::INTERNAL_SERVER_ERROR, "the worker ended".into())),
    }
}

async fn run_json(state: &State, module: usize, name: &str, req: Request<Incoming>) -> (Resp, Option<String>) {
    let bytes = match body(state, req).await {
        Ok(b) => b,
        Err(r) => return (r, None),
    };
    let parsed: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => return (error(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")), None),
        }
    };
    let (batch, items) = match parsed {
        Value::Array(items) if items.len() > MAX_BATCH => return (error(StatusCode::PAYLOAD_TOO_LARGE, format!("a batch has at most {MAX_BATCH} runs")), None),
        Value::Array(items) => (true, items),
        v @ Value::Object(_) => (false, vec![v]),
        _ => return (error(StatusCode::BAD_REQUEST, "the body is a JSON object (one run) or an array of them (a batch)"), None),
    };
    let mut specs = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let spec: RunSpec = match serde_json::from_value(item) {
            Ok(s) => s,
            Err(e) => return (error(StatusCode::BAD_REQUEST, if batch { format!("run {i}: {e}") } else { e.to_string() }), None),
        };
        match spec.request() {
            Ok(r) => specs.push((spec, r)),
            Err(e) => return (error(StatusCode::BAD_REQUEST, if batch { format!("run {i}: {e}") } else { e }), None),
        }
    }
    // Every run of a batch is queued at once; the workers take them in order.
    let runs = specs.into_iter().map(|(spec, req)| async move { (dispatch(state, module, req).await, spec) });
    let mut results = Vec::new();
    for r in join_all(runs.collect()).await {
        results.push(r);
    }
    let mut out = Vec::new();
    let mut summary = String::new();
    for (r, spec) in results {
        match r {
            Ok(r) => {
                let v = verdict(&r, spec.expected_output.as_deref());
                state.metrics().run(name, v, r.trap.is_some(), r.timed_out);
                if !batch {
                    summary = format!("verdict=\"{v}\" exit={} wall={:.3}ms{}", r.exit_code.map_or("-".into(), |c| c.to_string()), r.wall.as_secs_f64() * 1e3, r.trap.as_ref().map_or(String::new(), |t| format!(" trap=\"{t}\"")));
                }
                out.push(result_json(&r, &spec, v));
            }
            Err((status, e)) if !batch => return (error(status, e), None),
            Err((_, e)) => out.push(json!({ "error": e })),
        }
    }
    if batch {
        summary = format!("batch={}", out.len());
        (json_response(StatusCode::OK, &Value::Array(out)), Some(summary))
    } else {
        (json_response(StatusCode::OK, &out.pop().unwrap_or(Value::Null)), Some(summary))
    }
}

/// Await every future, in order (they make progress together).
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out = Vec::with_capacity(pinned.len());
    // The runs were queued when each future first ran: poll them all once, then in order.
    let mut done: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.extend(done.into_iter().flatten());
    out
}

/// A WAGI request: CGI/1.1 variables, the body as stdin, the query's `name=value` pairs as
/// arguments; the response is the program's stdout: CGI headers (`Content-Type`, `Status`,
/// `Location`, others passed on), a blank line, the body.
async fn wagi(state: &State, module: usize, name: &str, req: Request<Incoming>) -> (Resp, Option<String>) {
    let (parts, body_in) = req.into_parts();
    let bytes = match body(state, Request::from_parts(parts.clone(), body_in)).await {
        Ok(b) => b,
        Err(r) => return (r, None),
    };
    let script = format!("/wagi/{name}");
    let path_info = parts.uri.path().strip_prefix(&script).unwrap_or("").to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let mut env = vec![
        ("GATEWAY_INTERFACE".to_string(), "CGI/1.1".to_string()),
        ("SERVER_PROTOCOL".into(), format!("{:?}", parts.version)),
        ("SERVER_SOFTWARE".into(), format!("wasce/{}", env!("CARGO_PKG_VERSION"))),
        ("REQUEST_METHOD".into(), parts.method.to_string()),
        ("SCRIPT_NAME".into(), script.clone()),
        ("PATH_INFO".into(), path_info.clone()),
        ("QUERY_STRING".into(), query.clone()),
        ("CONTENT_LENGTH".into(), bytes.len().to_string()),
        ("X_MATCHED_ROUTE".into(), format!("{script}/...")),
        ("X_FULL_URL".into(), parts.uri.to_string()),
    ];
    if let Some(ct) = parts.headers.get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        env.push(("CONTENT_TYPE".into(), ct.to_string()));
    }
    if let Some(host) = parts.headers.get(hyper::header::HOST).and_then(|v| v.to_str().ok()) {
        env.push(("SERVER_NAME".into(), host.split(':').next().unwrap_or("").to_string()));
        env.push(("HTTP_HOST".into(), host.to_string()));
    }
    for (k, v) in &parts.headers {
        let Ok(v) = v.to_str() else { continue };
        let key = format!("HTTP_{}", k.as_str().to_ascii_uppercase().replace('-', "_"));
        // Credentials are not passed to handlers (as CGI servers do).
        if key == "HTTP_AUTHORIZATION" || key == "HTTP_HOST" || env.iter().any(|(n, _)| *n == key) {
            continue;
        }
        env.push((key, v.to_string()));
    }
    let args: Vec<String> = query.split('&').filter(|s| !s.is_empty()).map(String::from).collect();
    let req = RunRequest { args, env, stdin: bytes.to_vec(), ..RunRequest::default() };
    let r = match dispatch(state, module, req).await {
        Ok(r) => r,
        Err((status, e)) => return (error(status, e), None),
    };
    let v = verdict(&r, None);
    state.metrics().run(name, v, r.trap.is_some(), r.timed_out);
    let summary = Some(format!("wagi verdict=\"{v}\" exit={}", r.exit_code.map_or("-".into(), |c| c.to_string())));
    if r.exit_code != Some(0) {
        let msg = r.trap.clone().unwrap_or_else(|| format!("the handler exited with status {}", r.exit_code.unwrap_or(-1)));
        return (error(StatusCode::INTERNAL_SERVER_ERROR, msg), summary);
    }
    (cgi_response(&r.stdout), summary)
}

/// Split a CGI response into headers and body.
fn cgi_response(out: &[u8]) -> Resp {
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4)).or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)));
    let Some((head_end, body_start)) = split else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "the handler printed no CGI headers (headers, a blank line, then the body)");
    };
    let head = String::from_utf8_lossy(&out[..head_end]);
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(&out[body_start..])));
    let mut status = None;
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, format!("the handler printed a malformed CGI header `{line}`"));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("status") {
            status = v.split_whitespace().next().and_then(|c| c.parse::<u16>().ok()).and_then(|c| StatusCode::from_u16(c).ok());
            if status.is_none() {
                return error(StatusCode::INTERNAL_SERVER_ERROR, format!("the handler printed a bad Status `{v}`"));
            }
            continue;
        }
        match (hyper::header::HeaderName::from_bytes(k.as_bytes()), hyper::header::HeaderValue::from_str(v)) {
            (Ok(name), Ok(value)) => {
                if name == hyper::header::LOCATION && status.is_none() {
                    status = Some(StatusCode::FOUND);
                }
                resp.headers_mut().append(name, value);
            }
            _ => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("the handler printed a malformed CGI header `{line}`")),
        }
    }
    *resp.status_mut() = status.unwrap_or(StatusCode::OK);
    resp
}
