use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use medley_models::ModelHome;
use medley_pipeline::{
    Encoders, EvalError, IndexOptions, Indexer, ItemVectorSet, QueryEncoders, QueryError, evaluate,
    music_for as rank_music, music_query, parse_eval_tsv, resolve_vectors, search_hybrid, search_segments, search_text,
    short_id, similar_items,
};
use medley_store::SearchHit;

use crate::{config_err, open_db, query_error};

/// Find the items whose content best matches a text, by the `bridge` vector (text space).
#[derive(clap::Args)]
pub struct SearchArgs {
    /// What to look for, in words.
    text: String,
    /// LanceDB database written by `medley index`: a directory or an object-store URI (s3://...).
    #[arg(long)]
    db: String,
    /// Number of results.
    #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10000))]
    k: u32,
    /// SQL filter on `media` columns, applied before ranking, e.g. "duration_s < 60 AND kind = 'video'".
    #[arg(long = "where", value_name = "SQL")]
    filter: Option<String>,
    /// Print results as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Fuse the vector ranking with full-text (BM25) ranking over labels, transcripts and
    /// descriptions (reciprocal rank fusion); needs the full-text indexes `index` builds.
    #[arg(long, conflicts_with = "segments")]
    hybrid: bool,
    /// Search segments (shots or windows) rather than whole items; each hit gives the time
    /// range, and `--where` filters `segments` columns (start_s, end_s, duration_s, kind, ...).
    #[arg(long)]
    segments: bool,
    /// Rank by full-text (BM25) only, over labels, transcripts and descriptions; needs the
    /// full-text indexes `index` builds.
    #[arg(long, conflicts_with_all = ["hybrid", "segments"])]
    full_text: bool,
}

/// Find the items most like a given item (by content-hash prefix) or file (embedded on the
/// fly, not written), by the visual vector (audio for audio-only items).
#[derive(clap::Args)]
pub struct SimilarArgs {
    /// An item id (content hash, or a unique prefix of at least 6 characters) or a media file.
    item: String,
    #[arg(long)]
    db: String,
    #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10000))]
    k: u32,
    /// Vector to compare: visual, audio or bridge [default: visual, or audio without pictures].
    #[arg(long, value_parser = ["visual", "audio", "bridge"])]
    by: Option<String>,
    #[arg(long = "where", value_name = "SQL")]
    filter: Option<String>,
    #[arg(long)]
    json: bool,
}

/// Rank the music and audio items for a video through the language bridge: the video's
/// labels (in the text space) against the music's tags (in the same space).
#[derive(clap::Args)]
pub struct MusicForArgs {
    /// The video: an item id (content hash or unique prefix) or a file (embedded, not written).
    video: String,
    #[arg(long)]
    db: String,
    #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10000))]
    k: u32,
    #[arg(long)]
    json: bool,
}

/// Measure text-to-item retrieval: recall@1/5/10 and median rank over labelled queries.
#[derive(clap::Args)]
pub struct EvalArgs {
    #[arg(long)]
    db: String,
    /// TSV with a header line `query<TAB>target`; target is the indexed file's name or path.
    #[arg(long)]
    queries: PathBuf,
    #[arg(long)]
    json: bool,
}

fn print_hits(hits: &[SearchHit], json: bool, empty: &str) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(hits)?);
    } else if hits.is_empty() {
        println!("{empty}");
    } else {
        for (rank, hit) in hits.iter().enumerate() {
            let labels: Vec<String> =
                hit.labels.iter().take(3).map(|l| format!("{} {:.2}", l.label, l.score)).collect();
            let span = hit.span.map(|s| format!(" {:.1}-{:.1} s", s.start_s, s.end_s)).unwrap_or_default();
            println!(
                "{:>3}. {:.3}  {}  {}{span}  [{}]",
                rank + 1,
                hit.score,
                short_id(&hit.content_hash),
                hit.path,
                labels.join(", ")
            );
        }
    }
    Ok(())
}

/// The query's text models for `store`: MiniLM, and the text towers of the models that filled
/// the table's `clip` and `clap` columns, if it has them.
fn query_encoders(home: &ModelHome, store: &medley_store::Store) -> Result<QueryEncoders> {
    QueryEncoders::load(home, store).map_err(config_err)
}

pub async fn search(home: &ModelHome, a: SearchArgs) -> Result<ExitCode> {
    let (k, filter) = (a.k as usize, a.filter.as_deref());
    if a.full_text {
        // Words only: no model to load.
        let store = open_db(&a.db).await?;
        let hits = store.full_text(&a.text, k, filter).await.map_err(query_error)?;
        print_hits(&hits, a.json, &format!("no items with a text-searchable vector in {}", a.db))?;
        return Ok(ExitCode::SUCCESS);
    }
    // The text model loads on a blocking thread while the database opens: the two are most of
    // a call's time. The dual encoders' text towers, if the table has `clip` or `clap`
    // columns, load after (the table names them).
    let loading = {
        let home = home.clone();
        tokio::task::spawn_blocking(move || QueryEncoders::text_model(&home))
    };
    let store = open_db(&a.db).await;
    let text = loading.await.context("loading the text model")?.map_err(config_err)?;
    let store = store?;
    let encoders = QueryEncoders::for_store(text, home, &store).map_err(config_err)?;
    let hits = if a.hybrid {
        search_hybrid(&store, &encoders, &a.text, k, filter).await
    } else if a.segments {
        search_segments(&store, &encoders, &a.text, k, filter).await
    } else {
        search_text(&store, &encoders, &a.text, k, filter).await
    }
    .map_err(shared_query_error)?;
    print_hits(&hits, a.json, &format!("no items with a text-searchable vector in {}", a.db))?;
    Ok(ExitCode::SUCCESS)
}

/// Usage errors (a bad `--where`) exit 2, others 3, as for direct store queries.
fn shared_query_error(e: QueryError) -> anyhow::Error {
    match e {
        QueryError::Store(e) => query_error(e),
        other => other.into(),
    }
}

/// An item found for `similar` or `music-for`: its id, its vectors, and its labels when it was
/// embedded on the fly (an indexed item's are read from the table when needed).
struct FoundItem {
    hash: String,
    vectors: ItemVectorSet,
    labels: Option<Vec<medley_store::Label>>,
}

/// The vectors of an item given by id, or of a file embedded on the fly (nothing is written).
/// With `lean`, a file is embedded with only the stages its visual, audio and bridge vectors
/// come from (what `similar` compares): no speech, sound events, on-screen text or captions,
/// whose models are most of the load time of the default pipeline.
async fn item_vectors(
    home: &ModelHome,
    store: &medley_store::Store,
    db: &str,
    item: &str,
    lean: bool,
) -> Result<FoundItem> {
    Ok(if Path::new(item).is_file() {
        let mut config = crate::index::load_pipeline(home, None)?;
        if lean {
            config.stages.speech = false;
            config.stages.sound_events = false;
            config.stages.ocr = false;
            config.models.captioner = None;
        }
        let encoders = Arc::new(Encoders::load(home, config).map_err(config_err)?);
        let row = Indexer::new(encoders, medley_store::Store::open_existing(db).await?, IndexOptions::default())
            .embed(Path::new(item))
            .await?;
        FoundItem {
            hash: row.content_hash.clone(),
            vectors: [("visual", row.visual), ("audio", row.audio), ("bridge", row.bridge)],
            labels: Some(row.labels),
        }
    } else {
        match resolve_vectors(store, item).await.map_err(shared_query_error)? {
            Some((hash, vectors)) => FoundItem { hash, vectors, labels: None },
            None => return Err(config_err(anyhow::anyhow!("{item} is neither a file nor an item id in {db}"))),
        }
    })
}

pub async fn music_for(home: &ModelHome, a: MusicForArgs) -> Result<ExitCode> {
    let store = open_db(&a.db).await?;
    let found = item_vectors(home, &store, &a.db, &a.video, false).await?;
    // With a `clap` column, the video's labels are also read by that model's text tower.
    let clap = match QueryEncoders::clap_tower(home, &store).map_err(config_err)? {
        Some(tower) => {
            let labels = match found.labels {
                Some(l) => l,
                None => store.labels(&found.hash).await.map_err(query_error)?,
            };
            music_query(&tower, &labels).map_err(shared_query_error)?
        }
        None => None,
    };
    let hits = rank_music(&store, &a.video, &found.hash, found.vectors, clap.as_deref(), a.k as usize)
        .await
        .map_err(shared_query_error)?;
    print_hits(&hits, a.json, "no music or audio items with tags in this database")?;
    Ok(ExitCode::SUCCESS)
}

pub async fn similar(home: &ModelHome, a: SimilarArgs) -> Result<ExitCode> {
    let store = open_db(&a.db).await?;
    let FoundItem { hash, vectors, .. } = item_vectors(home, &store, &a.db, &a.item, true).await?;
    let hits = similar_items(&store, &a.item, &hash, vectors, a.by.as_deref(), a.k as usize, a.filter.as_deref())
        .await
        .map_err(shared_query_error)?;
    print_hits(&hits, a.json, "no similar items")?;
    Ok(ExitCode::SUCCESS)
}

pub async fn eval(home: &ModelHome, a: EvalArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&a.queries).with_context(|| format!("reading {}", a.queries.display()))?;
    let origin = a.queries.display().to_string();
    let queries = parse_eval_tsv(&text, &origin).map_err(config_err)?;
    let store = open_db(&a.db).await?;
    let encoders = query_encoders(home, &store)?;
    let report = match evaluate(&store, &encoders, &queries, &origin).await {
        Ok(r) => r,
        Err(e) if e.is_bad_input() => return Err(config_err(e)),
        Err(EvalError::Query(e)) => return Err(shared_query_error(e)),
        Err(e) => return Err(e.into()),
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} queries: recall@1 {:.3}, recall@5 {:.3}, recall@10 {:.3}, median rank {}",
            report.n, report.recall_at_1, report.recall_at_5, report.recall_at_10, report.median_rank
        );
    }
    Ok(ExitCode::SUCCESS)
}
