//! Routes, handlers and the JSON error shape `{"error": "..."}`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use medley_media::MediaErrorKind;
use medley_pipeline::{
    EvalError, EvalQuery, QueryError, SIMILAR_COLUMNS, evaluate, hash_file, music_for, music_prompt, resolve_vectors,
    search_segments_spaces, search_spaces, similar_items,
};
use medley_store::StoreError;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::embed::AnswerKey;
use crate::{AppState, OPENAPI};

/// An error answered as `{"error": message}` with its status.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(status, message.into())
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Store(StoreError::Query { message, .. }) => Self::bad_request(message),
            e @ (QueryError::NoVector { .. } | QueryError::NoLabels { .. }) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            e => Self::internal(e.to_string()),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The router plus the `(method, path)` of every route, so a test can hold `openapi.json` to it.
pub struct Routes {
    router: Router<AppState>,
    pub list: Vec<(&'static str, &'static str)>,
}

impl Routes {
    fn add(mut self, method: &'static str, path: &'static str, handler: MethodRouter<AppState>) -> Self {
        self.router = self.router.route(path, handler);
        self.list.push((method, path));
        self
    }
}

/// Every route. Those under `/v1/` and `/metrics` need the token (see `needs_token`).
pub fn routes() -> Routes {
    Routes { router: Router::new(), list: Vec::new() }
        .add("get", "/healthz", get(healthz))
        .add("get", "/openapi.json", get(openapi))
        .add("get", "/metrics", get(metrics))
        .add("post", "/v1/media", post(submit))
        .add("get", "/v1/jobs/{id}", get(job))
        .add("get", "/v1/search", get(search))
        .add("get", "/v1/similar/{id}", get(similar))
        .add("get", "/v1/music-for/{id}", get(music))
        .add("post", "/v1/eval", post(eval))
}

fn needs_token(path: &str) -> bool {
    path.starts_with("/v1/") || path == "/v1" || path == "/metrics"
}

pub fn router(app: AppState) -> Router {
    // Bodies beyond the upload limit are still read (and dropped) up to this bound so the
    // client gets its 413 instead of a reset connection; past it the connection is cut.
    let drain_limit = app.config.max_upload_bytes.saturating_mul(2).saturating_add(16 << 20);
    routes()
        .router
        .fallback(|req: Request| async move {
            ApiError::new(StatusCode::NOT_FOUND, format!("no route {} {}", req.method(), req.uri().path()))
        })
        .method_not_allowed_fallback(|req: Request| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed on {}", req.method(), req.uri().path()),
            )
        })
        .layer(DefaultBodyLimit::max(usize::try_from(drain_limit).unwrap_or(usize::MAX)))
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .with_state(app)
}

async fn auth(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &app.config.token
        && needs_token(req.uri().path())
    {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let ok = given.and_then(|v| v.strip_prefix("Bearer ")).is_some_and(|t| constant_time_eq(t, token));
        if !ok {
            let message = if given.is_none() {
                "missing Authorization header: send `Authorization: Bearer <token>`"
            } else {
                "wrong bearer token"
            };
            let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `200 {"status": "ok", ...}` while the worker runs; `503 {"status": "unavailable", ...}` while
/// it is down (jobs are accepted and wait in the queue) or the server is stopping.
async fn healthz(State(app): State<AppState>) -> Response {
    let worker = app.worker.status();
    let up = worker.state == crate::WorkerState::Running;
    let status = if up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if up { "ok" } else { "unavailable" },
        "queued": app.jobs.queued(),
        "worker": worker,
    });
    (status, Json(body)).into_response()
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(&app.jobs.counts(), &app.worker.status()),
    )
}

async fn job(State(app): State<AppState>, axum::extract::Path(id): axum::extract::Path<String>) -> ApiResult<Response> {
    let job = app.jobs.get(&id).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job {id}")))?;
    Ok(Json(job).into_response())
}

/// `POST /v1/media`: a multipart upload (field `file`) or JSON `{"path": ...}`.
async fn submit(State(app): State<AppState>, req: Request) -> ApiResult<Response> {
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let job = if content_type.starts_with("multipart/form-data") {
        let result = upload(&app, req).await;
        if result.is_err() {
            app.metrics.uploads_rejected.fetch_add(1, Ordering::Relaxed);
        }
        result?
    } else if content_type.starts_with("application/json") {
        submit_path(&app, req).await?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST /v1/media takes multipart/form-data with a `file` field, or application/json {\"path\": \"...\"}",
        ));
    };
    Ok((StatusCode::ACCEPTED, Json(json!({ "job_id": job.id, "status": job.status }))).into_response())
}

/// A file under `<state>/tmp/`, removed when dropped unless kept.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    fn new(path: PathBuf) -> Self {
        Self { path, keep: false }
    }
    fn path(&self) -> &Path {
        &self.path
    }
    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Removed before the answer goes out (an unlink is one quick syscall), so a client
        // told its upload was refused never finds it still in `tmp/`; handed to the blocking
        // pool, the removal raced the answer.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An upload received into `tmp/`: not yet checked.
struct Received {
    file: TempFile,
    name: String,
    ext: String,
    hash: String,
    size: u64,
}

fn malformed(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body too large: {}", e.body_text()))
    } else {
        ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// The file's extension if it is a plain short one, else `bin`.
fn extension(name: &str) -> String {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| !e.is_empty() && e.len() <= 10 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .map_or_else(|| "bin".to_string(), str::to_ascii_lowercase)
}

async fn upload(app: &AppState, req: Request) -> ApiResult<crate::Job> {
    let limit = app.config.max_upload_bytes;
    let mut multipart = Multipart::from_request(req, app)
        .await
        .map_err(|e| ApiError::bad_request(format!("malformed multipart request: {}", e.body_text())))?;
    let mut received: Option<Received> = None;
    let mut too_large = false;
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        if field.name() != Some("file") || received.is_some() || too_large {
            while field.chunk().await.map_err(malformed)?.is_some() {}
            continue;
        }
        let name = field.file_name().unwrap_or("upload").to_string();
        let ext = extension(&name);
        let tmp = app.config.tmp().join(format!("{}.{ext}", crate::jobs::new_id()));
        let file = TempFile::new(tmp.clone());
        let mut out =
            tokio::fs::File::create(&tmp).await.map_err(|e| ApiError::internal(format!("storing the upload: {e}")))?;
        let (mut hasher, mut size) = (medley_core::ContentHasher::default(), 0u64);
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            size += chunk.len() as u64;
            if size > limit {
                too_large = true;
                continue; // read on so the client gets the answer, write no more
            }
            hasher.update(&chunk);
            write_chunk(&mut out, &chunk).await?;
        }
        out.flush().await.map_err(|e| ApiError::internal(format!("storing the upload: {e}")))?;
        // On disk before the job that names it is.
        out.sync_all().await.map_err(|e| ApiError::internal(format!("storing the upload: {e}")))?;
        received = Some(Received { file, name, ext, hash: hasher.finish(), size });
    }
    if too_large {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the file is larger than the upload limit of {} bytes (--max-upload-mb)", limit),
        ));
    }
    let Some(r) = received else {
        return Err(ApiError::bad_request("the multipart body has no `file` field"));
    };
    if r.size == 0 {
        return Err(ApiError::bad_request(format!("{}: the uploaded file is empty (0 bytes)", r.name)));
    }
    let tmp = r.file.path().to_path_buf();
    let probed = tokio::task::spawn_blocking(move || medley_media::probe(&tmp))
        .await
        .map_err(|e| ApiError::internal(format!("probing the upload: {e}")))?;
    if let Err(e) = probed {
        let status = match e.kind {
            MediaErrorKind::NotMedia(_) | MediaErrorKind::ZeroBytes => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        return Err(ApiError::new(status, format!("{}: {}", r.name, e.kind)));
    }
    let dest = app.config.uploads().join(format!("{}.{}", r.hash, r.ext));
    // The same content uploaded before is already in place; the new copy is dropped.
    if !tokio::fs::try_exists(&dest).await.unwrap_or(false) {
        tokio::fs::rename(r.file.path(), &dest)
            .await
            .map_err(|e| ApiError::internal(format!("storing the upload: {e}")))?;
        r.file.keep();
    }
    app.metrics.uploads.fetch_add(1, Ordering::Relaxed);
    app.metrics.upload_bytes.fetch_add(r.size, Ordering::Relaxed);
    app.jobs.submit(&dest, r.hash).await.map_err(|e| ApiError::internal(format!("writing the job: {e}")))
}

async fn write_chunk(out: &mut tokio::fs::File, chunk: &Bytes) -> ApiResult<()> {
    out.write_all(chunk).await.map_err(|e| ApiError::internal(format!("storing the upload: {e}")))
}

#[derive(Deserialize)]
struct PathBody {
    path: PathBuf,
}

async fn submit_path(app: &AppState, req: Request) -> ApiResult<crate::Job> {
    let Json(body) = Json::<PathBody>::from_request(req, app)
        .await
        .map_err(|e| ApiError::new(e.status(), format!("bad JSON body: {}", e.body_text())))?;
    let roots = &app.config.roots;
    if roots.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "submitting by path is off: start the server with --root DIR to allow files under DIR",
        ));
    }
    if !body.path.is_absolute() {
        return Err(ApiError::bad_request(format!("{}: the path must be absolute", body.path.display())));
    }
    let outside = || {
        let list: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} is outside the allowed roots ({})", body.path.display(), list.join(", ")),
        )
    };
    let path = match tokio::fs::canonicalize(&body.path).await {
        Ok(p) => p,
        // A missing path says nothing about files outside the roots.
        Err(_) if !roots.iter().any(|r| body.path.starts_with(r)) => return Err(outside()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, format!("{}: no such file", body.path.display())));
        }
        Err(e) => return Err(ApiError::new(StatusCode::FORBIDDEN, format!("{}: {e}", body.path.display()))),
    };
    if !roots.iter().any(|r| path.starts_with(r)) {
        return Err(outside());
    }
    if !tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()) {
        return Err(ApiError::bad_request(format!("{}: not a file", body.path.display())));
    }
    let p = path.clone();
    let hash = tokio::task::spawn_blocking(move || hash_file(&p))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, format!("{}: {e}", body.path.display())))?;
    app.jobs.submit(&path, hash).await.map_err(|e| ApiError::internal(format!("writing the job: {e}")))
}

fn bad_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request(format!("bad query string: {}", e.body_text()))
}

const MAX_K: u32 = 1000;

fn check_k(k: Option<u32>) -> ApiResult<usize> {
    match k.unwrap_or(10) {
        k @ 1..=MAX_K => Ok(k as usize),
        k => Err(ApiError::bad_request(format!("k = {k}: must be between 1 and {MAX_K}"))),
    }
}

#[derive(Deserialize)]
struct SearchParams {
    q: Option<String>,
    k: Option<u32>,
    /// Search shots/windows and return their time ranges, as `medley search --segments`.
    #[serde(default)]
    segments: bool,
}

async fn search(
    State(app): State<AppState>,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = params.map_err(bad_query)?;
    let q = p.q.filter(|q| !q.trim().is_empty()).ok_or_else(|| ApiError::bad_request("missing query parameter q"))?;
    let k = check_k(p.k)?;
    let key = AnswerKey { text: q, k, segments: p.segments };
    let generation = app.answers.generation();
    let claim = match app.answers.get_or_claim(generation, key.clone()).await {
        Ok(answer) => return Ok(json_bytes(answer)),
        Err(claim) => claim,
    };
    let vector = app.queries.embed(&key.text).await.map_err(|e| ApiError::internal(e.to_string()))?;
    // In the dual encoders' spaces too when the pipeline has such models (as `medley search`).
    let mut dual = medley_pipeline::DualQuery::default();
    let store = &app.reader;
    for (embedder, space, slot) in [
        (&app.clip_queries, store.clip_space(), &mut dual.clip),
        (&app.clap_queries, store.clap_space(), &mut dual.clap),
    ] {
        if let (Some(embedder), Some(_)) = (embedder, space) {
            *slot = Some(embedder.embed(&key.text).await.map_err(|e| ApiError::internal(e.to_string()))?.to_vec());
        }
    }
    let segments = key.segments;
    let hits = in_pool(&app, move |app| async move {
        let store = &app.reader;
        Ok(if segments {
            search_segments_spaces(store, &vector, &dual, k, None).await?
        } else {
            search_spaces(store, &vector, &dual, k, None).await?
        })
    })
    .await?;
    let answer = Bytes::from(serde_json::to_vec(&hits).map_err(|e| ApiError::internal(e.to_string()))?);
    claim.fill(answer.clone());
    Ok(json_bytes(answer))
}

/// Run `query` against the server's table in the query pool, in its turn.
async fn in_pool<T, F>(app: &AppState, query: impl FnOnce(AppState) -> F) -> ApiResult<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = ApiResult<T>> + Send + 'static,
{
    let asked = query(app.clone());
    app.pool.run(asked).await.map_err(|e| ApiError::internal(e.to_string()))?
}

/// A JSON body already serialised (as `Json` would answer it).
fn json_bytes(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[derive(Deserialize)]
struct SimilarParams {
    k: Option<u32>,
    by: Option<String>,
}

async fn similar(
    State(app): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    params: Result<Query<SimilarParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = params.map_err(bad_query)?;
    let k = check_k(p.k)?;
    if let Some(by) = &p.by
        && !SIMILAR_COLUMNS.contains(&by.as_str())
    {
        return Err(ApiError::bad_request(format!("by = {by}: must be one of {}", SIMILAR_COLUMNS.join(", "))));
    }
    let hits = in_pool(&app, move |app| async move {
        let store = &app.reader;
        let (hash, vectors) = resolve_vectors(store, &id).await?.ok_or_else(|| no_item(&id))?;
        Ok(similar_items(store, &id, &hash, vectors, p.by.as_deref(), k, None).await?)
    })
    .await?;
    Ok(Json(hits).into_response())
}

fn no_item(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no item {id} in the index"))
}

#[derive(Deserialize)]
struct KParams {
    k: Option<u32>,
}

/// `GET /v1/music-for/{id}`: as `medley music-for ID --json`.
async fn music(
    State(app): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    params: Result<Query<KParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = params.map_err(bad_query)?;
    let k = check_k(p.k)?;
    let hits = in_pool(&app, move |app| async move {
        let store = &app.reader;
        let (hash, vectors) = resolve_vectors(store, &id).await?.ok_or_else(|| no_item(&id))?;
        // With a `clap` column, the video's labels read by that model's text tower (as `medley music-for`).
        let clap = match (&app.clap_queries, store.clap_space()) {
            (Some(embedder), Some(_)) => match music_prompt(&store.labels(&hash).await.map_err(QueryError::from)?) {
                Some(prompt) => {
                    Some(embedder.embed(&prompt).await.map_err(|e| ApiError::internal(e.to_string()))?.to_vec())
                }
                None => None,
            },
            _ => None,
        };
        Ok(music_for(store, &id, &hash, vectors, clap.as_deref(), k).await?)
    })
    .await?;
    Ok(Json(hits).into_response())
}

/// Most queries one `POST /v1/eval` takes: each ranks every item.
const MAX_EVAL_QUERIES: usize = 1000;

#[derive(Deserialize)]
struct EvalBody {
    queries: Vec<EvalQuery>,
}

/// `POST /v1/eval`: `{"queries": [{"query", "target"}, ...]}`, answered as `medley eval --json`.
async fn eval(
    State(app): State<AppState>,
    body: Result<Json<EvalBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body.map_err(|e| ApiError::new(e.status(), format!("bad JSON body: {}", e.body_text())))?;
    if body.queries.len() > MAX_EVAL_QUERIES {
        return Err(ApiError::bad_request(format!(
            "{} queries: at most {MAX_EVAL_QUERIES} in one request",
            body.queries.len()
        )));
    }
    let encoders = medley_pipeline::QueryEncoders {
        text: app.encoders.text.clone(),
        clip: app.encoders.clip.as_ref().map(|c| c.text.clone()),
        clap: app.encoders.clap.as_ref().map(|c| c.text.clone()),
    };
    let report = in_pool(&app, move |app| async move {
        evaluate(&app.reader, &encoders, &body.queries, "the request").await.map_err(|e| match e {
            EvalError::Query(e) => ApiError::from(e),
            e => ApiError::bad_request(e.to_string()),
        })
    })
    .await?;
    Ok(Json(report).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_openapi_json() -> Result<(), Box<dyn std::error::Error>> {
        let spec: serde_json::Value = serde_json::from_str(OPENAPI)?;
        assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")));
        let paths = spec["paths"].as_object().ok_or("openapi.json has no paths")?;
        let list = routes().list;
        for (method, path) in &list {
            assert!(paths.get(*path).and_then(|p| p.get(*method)).is_some(), "{method} {path} is not in openapi.json");
        }
        // And nothing documented that the router does not serve.
        for (path, ops) in paths {
            let ops = ops.as_object().ok_or_else(|| format!("{path} is not an object"))?;
            for method in ops.keys().filter(|k| *k != "parameters") {
                assert!(list.contains(&(method.as_str(), path.as_str())), "openapi.json documents {method} {path}");
            }
        }
        Ok(())
    }

    #[test]
    fn token_guards_the_api_and_metrics_but_not_health() {
        assert!(needs_token("/v1/media") && needs_token("/v1/jobs/x") && needs_token("/metrics"));
        assert!(!needs_token("/healthz") && !needs_token("/openapi.json"));
    }

    #[test]
    fn upload_extensions_are_plain_or_bin() {
        assert_eq!(extension("a.PNG"), "png");
        assert_eq!(extension("noext"), "bin");
        assert_eq!(extension("x.tar/../../y"), "bin");
        assert_eq!(extension("evil.p$g"), "bin");
    }
}
