//! The index run's orchestration with stub models and a real LanceDB in a temporary folder:
//! staging and batching, commits and their retries, the stop flag, per-file failures (a
//! panicking model included), Semantic ID assignment and healing, segment pooling, partial
//! files, discovery and pipeline files. Real media files are written by the tests; no model
//! files are needed, and each test takes well under a second or two.

mod kit;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use arrow_array::{Array, Float64Array, StringArray};
use medley_fuse::TrainConfig;
use medley_pipeline::{
    Discovery, Event, FusionConfig, IndexOptions, Indexer, PipelineConfig, SegmentBy, SidAssigner, Summary, discover,
    train_sids,
};
use medley_store::{Store, TableName};

use kit::{BLUE, GREEN, RED, stub_models, truncated_au, wav, y4m};

fn options() -> IndexOptions {
    IndexOptions {
        commit_every: 2,
        frame_batch: 3,
        window_batch: 2,
        workers: 2,
        decode_threads: 1,
        ..Default::default()
    }
}

fn files(paths: &[PathBuf]) -> Discovery {
    Discovery { files: paths.to_vec(), ..Default::default() }
}

/// Run and collect the events as `(file name, what happened)`.
async fn run(indexer: &Indexer, discovery: &Discovery) -> (Summary, Vec<(String, String)>) {
    let mut events = Vec::new();
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let mut on_event = |e: Event<'_>| {
        events.push(match e {
            Event::Indexed { path, partial: None, .. } => (name(path), "indexed".into()),
            Event::Indexed { path, partial: Some(p), .. } => (name(path), format!("partial {:.1}", p.decoded_s)),
            Event::AlreadyIndexed(path) => (name(path), "already".into()),
            Event::Failed(err) => (name(&err.path), format!("failed {} {}", err.stage, err.kind)),
        })
    };
    let summary = indexer.run(discovery, &mut on_event).await.unwrap();
    events.sort();
    (summary, events)
}

/// `(content_hash, start_s, end_s)` of every segment.
async fn segments(store: &Store) -> Vec<(String, f64, f64)> {
    let (_, batches) = store.scan(TableName::Segments).await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        let col = |name: &str| b.column_by_name(name).unwrap().clone();
        let (hash, start, end) = (col("content_hash"), col("start_s"), col("end_s"));
        let hash = hash.as_any().downcast_ref::<StringArray>().unwrap();
        let start = start.as_any().downcast_ref::<Float64Array>().unwrap();
        let end = end.as_any().downcast_ref::<Float64Array>().unwrap();
        out.extend((0..b.num_rows()).map(|i| (hash.value(i).to_string(), start.value(i), end.value(i))));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_indexed_in_batches_with_pooled_vectors_segments_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let paths = vec![
        wav(&d.join("a.wav"), 2.5, 220.0),
        wav(&d.join("b.wav"), 2.5, 440.0),
        y4m(&d.join("blue.y4m"), 2.0, BLUE),
        y4m(&d.join("green.y4m"), 2.0, GREEN),
        // A media extension on a text file: FFmpeg cannot open it.
        {
            std::fs::write(d.join("notes.wav"), "not a sound").unwrap();
            d.join("notes.wav")
        },
    ];
    let indexer = Indexer::with_models(stub_models(false), kit::store(d).await, options());
    let (summary, events) = run(&indexer, &files(&paths)).await;

    assert_eq!((summary.indexed, summary.failed, summary.already_indexed), (4, 1, 0), "{summary:#?}");
    assert!(events.contains(&("notes.wav".into(), "failed probe not_media".into())), "{events:?}");
    let store = indexer.store();
    assert_eq!(store.count_media().await.unwrap(), 4);
    assert_eq!(store.failures().await.unwrap().len(), 1);
    assert_eq!(summary.rows_written, 4);
    // Five results in commits of two: three commits.
    assert_eq!(indexer.progress().commits.load(Ordering::Relaxed), 3);
    assert!((summary.media_seconds - 9.0).abs() < 0.1, "{}", summary.media_seconds);

    // Pooling: the blue video's visual vector is the mean of its frames' stub outputs.
    let blue = medley_pipeline::hash_file(&paths[2]).unwrap();
    let visual = store.vector("visual", &blue).await.unwrap().unwrap();
    assert!(visual[2] > 0.8 && visual[0] < 0.2 && (visual[3] - 1.0).abs() < 1e-6, "{visual:?}");
    // Sounds have no pictures; the audio vector pools half-second windows.
    let a = medley_pipeline::hash_file(&paths[0]).unwrap();
    assert_eq!(store.vector("visual", &a).await.unwrap(), None);
    let audio = store.vector("audio", &a).await.unwrap().unwrap();
    assert!(audio[0] > 0.5 && (audio[2] - 1.0).abs() < 1e-6, "{audio:?}");

    // One-second windows: 2.5 s sounds have three segments (the last one short), 2 s videos two.
    let segs = segments(store).await;
    assert_eq!(segs.len(), 3 + 3 + 2 + 2, "{segs:?}");
    let of_a: Vec<_> = segs.iter().filter(|s| s.0 == a).map(|s| (s.1, s.2)).collect();
    assert_eq!(of_a.len(), 3);
    assert_eq!((of_a[0].0, of_a[1].0, of_a[2].0), (0.0, 1.0, 2.0));
    assert!((of_a[2].1 - 2.5).abs() < 0.01, "{of_a:?}");

    // A second run finds everything done, and tries the failed file again.
    let (again, _) = run(&indexer, &files(&paths)).await;
    assert_eq!((again.indexed, again.already_indexed, again.failed), (0, 4, 1));
    assert_eq!(store.count_media().await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_model_fails_only_its_file_at_the_encode_stage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let paths = vec![
        y4m(&d.join("blue.y4m"), 1.0, BLUE),
        y4m(&d.join("red.y4m"), 1.0, RED),
        wav(&d.join("tone.wav"), 1.0, 330.0),
        y4m(&d.join("green.y4m"), 1.0, GREEN),
    ];
    let indexer = Indexer::with_models(stub_models(true), kit::store(d).await, options());
    let (summary, events) = run(&indexer, &files(&paths)).await;

    assert_eq!((summary.indexed, summary.failed), (3, 1), "{events:?}");
    assert!(events.contains(&("red.y4m".into(), "failed encode panic".into())), "{events:?}");
    let failures = indexer.store().failures().await.unwrap();
    assert_eq!(failures.len(), 1);
    let (path, stage, kind, message) = &failures[0];
    assert!(path.ends_with("red.y4m"));
    assert_eq!((stage.as_str(), kind.as_str()), ("encode", "panic"));
    assert!(message.contains("a red frame"), "{message}");
    assert_eq!(indexer.store().count_media().await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_flag_ends_the_run_with_what_is_done_committed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let paths: Vec<PathBuf> =
        (0..12).map(|i| wav(&d.join(format!("{i:02}.wav")), 0.5, 200.0 + 50.0 * i as f32)).collect();
    let indexer =
        Indexer::with_models(stub_models(false), kit::store(d).await, IndexOptions { workers: 1, ..options() });
    let stop = indexer.stop_flag();
    let mut on_event = |_: Event<'_>| stop.store(true, Ordering::Relaxed);
    let summary = indexer.run(&files(&paths), &mut on_event).await.unwrap();

    assert!(summary.interrupted);
    // The flag is set when the first file is done: with one worker, at most the file in
    // progress then is finished too; files hashed ahead are not started.
    assert!(summary.indexed >= 1 && summary.indexed <= 2, "{summary:#?}");
    assert_eq!(indexer.store().count_media().await.unwrap(), summary.indexed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_file_is_a_partial_row_and_its_segments_stop_where_decoding_did() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cut = truncated_au(&d.join("cut.au"), 10.0, 2.7);
    let whole = wav(&d.join("whole.wav"), 2.4, 440.0);
    let indexer = Indexer::with_models(stub_models(false), kit::store(d).await, options());

    // The row describes what was decoded, and keeps what the header promised.
    let row = indexer.embed(&cut).await.unwrap();
    assert!(row.partial);
    assert!((row.duration_s.unwrap() - 2.7).abs() < 0.1, "{:?}", row.duration_s);
    assert!((row.declared_duration_s.unwrap() - 10.0).abs() < 0.01, "{:?}", row.declared_duration_s);
    let row = indexer.embed(&whole).await.unwrap();
    assert!(!row.partial);

    let (summary, events) = run(&indexer, &files(&[cut.clone(), whole])).await;
    assert_eq!(summary.indexed, 2);
    assert!(events.contains(&("cut.au".into(), "partial 2.7".into())), "{events:?}");
    assert_eq!(summary.partial.len(), 1);
    let p = &summary.partial[0];
    assert!(p.path.ends_with("cut.au") && (p.declared_s - 10.0).abs() < 0.01 && (p.decoded_s - 2.7).abs() < 0.1);
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["partial"][0]["declared_s"].as_f64().map(f64::round), Some(10.0));

    let hash = medley_pipeline::hash_file(&cut).unwrap();
    let segs: Vec<_> = segments(indexer.store()).await.into_iter().filter(|s| s.0 == hash).collect();
    // One-second windows up to what was decoded: the last ends at 2.7 s, not at 3 (or 10).
    assert_eq!(segs.len(), 3, "{segs:?}");
    assert!(segs.iter().all(|s| s.2 <= 2.75 && s.1 < s.2), "{segs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_items_get_semantic_ids_and_items_without_are_healed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let first: Vec<PathBuf> = vec![
        y4m(&d.join("blue.y4m"), 1.0, BLUE),
        y4m(&d.join("green.y4m"), 1.0, GREEN),
        wav(&d.join("low.wav"), 1.0, 110.0),
        wav(&d.join("high.wav"), 1.0, 1760.0),
    ];
    let indexer = Indexer::with_models(stub_models(false), kit::store(d).await, options());
    let (summary, _) = run(&indexer, &files(&first)).await;
    assert_eq!((summary.indexed, summary.sids_assigned), (4, 0));

    let store = indexer.store();
    let fusion = FusionConfig { dim: 0, ..PipelineConfig::parse_unchecked(kit::PIPELINE).unwrap().fusion };
    let trained = train_sids(store, &fusion, &TrainConfig::new(2, 2), 16).await.unwrap();
    assert_eq!(trained.items, 4);

    // A new item gets its ID in the run that indexes it.
    let red = y4m(&d.join("red.y4m"), 1.0, RED);
    let (summary, _) = run(&indexer, &files(&[red])).await;
    assert_eq!((summary.indexed, summary.sids_assigned), (1, 1), "{summary:#?}");

    // An item written without its ID (a run stopped between the two) is given one by the
    // next run, even one with nothing to index.
    let late = wav(&d.join("late.wav"), 1.0, 660.0);
    let row = indexer.embed(&late).await.unwrap();
    store.upsert_media(&[row]).await.unwrap();
    let (summary, _) = run(&indexer, &files(&[])).await;
    assert_eq!(summary.sids_assigned, 1, "{summary:#?}");
    let assigner = SidAssigner::load(store).await.unwrap().unwrap();
    assert_eq!(store.sids(assigner.version()).await.unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_races_another_writer_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let paths = vec![wav(&d.join("a.wav"), 1.0, 220.0), {
        std::fs::write(d.join("b.wav"), "not a sound").unwrap();
        d.join("b.wav")
    }];
    let indexer = Indexer::with_models(stub_models(false), kit::store(d).await, options());
    // Another process replaces the `failures` table after this one opened it (as a concurrent
    // first run creating the tables does): this run's append to it conflicts once.
    let other = lancedb::connect(&d.join("db").to_string_lossy()).execute().await.unwrap();
    let failures = other.open_table("failures").execute().await.unwrap();
    let schema = failures.schema().await.unwrap();
    other
        .create_empty_table("failures", schema)
        .mode(lancedb::database::CreateTableMode::Overwrite)
        .execute()
        .await
        .unwrap();

    let (summary, _) = run(&indexer, &files(&paths)).await;
    assert_eq!((summary.indexed, summary.failed), (1, 1));
    assert!(summary.warnings.iter().any(|w| w.contains("raced with another writer")), "{:?}", summary.warnings);
    assert_eq!(indexer.store().failures().await.unwrap().len(), 1);
    assert_eq!(indexer.store().count_media().await.unwrap(), 1);
}

#[test]
fn discovery_probes_files_without_a_media_extension() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("media");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    wav(&d.join("tone.data7"), 0.5, 440.0);
    wav(&d.join("sub").join("noext"), 0.5, 440.0);
    wav(&d.join("book.m4b"), 0.5, 440.0);
    y4m(&d.join("clip.weird"), 0.5, BLUE);
    wav(&d.join(".hidden.wav"), 0.5, 440.0);
    std::fs::write(d.join("notes.txt"), "a text file").unwrap();
    std::fs::write(d.join("notes.unknown"), "neither is this one, whatever its extension").unwrap();
    std::fs::write(d.join("empty.bin2"), "").unwrap();
    // The start of an MP4 whose index (moov) was never written: FFmpeg knows the container
    // but cannot open it. Without a media extension it is still taken, so it fails by name.
    let mut cut = Vec::new();
    cut.extend_from_slice(b"\0\0\0\x18ftypisom\0\0\x02\0isommp41");
    cut.extend_from_slice(b"\0\x10\0\0mdat");
    cut.resize(4096, 0x5a);
    std::fs::write(d.join("download"), &cut).unwrap();
    // A download still in progress, and one of something that is not media.
    std::fs::write(d.join("clip.mp4.part"), &cut).unwrap();
    std::fs::write(d.join("Clip Two.MOV.crdownload"), &cut).unwrap();
    std::fs::write(d.join("video.part"), &cut).unwrap();
    std::fs::write(d.join("archive.zip.part"), "PK\x03\x04 not media").unwrap();

    let found = discover(std::slice::from_ref(&d)).unwrap();
    let names = |v: &[PathBuf]| v.iter().map(|p| p.strip_prefix(&d).unwrap().display().to_string()).collect::<Vec<_>>();
    assert_eq!(names(&found.files), ["book.m4b", "clip.weird", "download", "sub/noext", "tone.data7"]);
    assert_eq!(names(&found.skipped), ["archive.zip.part", "empty.bin2", "notes.txt", "notes.unknown"]);
    assert_eq!(names(&found.unfinished), ["Clip Two.MOV.crdownload", "clip.mp4.part", "video.part"]);
    let err = medley_media::probe(&d.join("download")).unwrap_err();
    assert_eq!(err.kind.code(), "corrupt", "{err}");

    // A missing path is named before any work.
    let err = discover(&[d.join("nope")]).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn pipeline_files_are_typed_and_bad_values_are_named() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        PipelineConfig::parse_unchecked(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let ok = PipelineConfig::parse_unchecked(kit::PIPELINE).unwrap();
    assert_eq!(ok.segment_by(), SegmentBy::Window(1.0));
    let edit = |from: &str, to: &str| PipelineConfig::parse_unchecked(&kit::PIPELINE.replace(from, to));
    let auto = edit("by = \"window\"", "by = \"auto\"").unwrap();
    assert_eq!(auto.segment_by(), SegmentBy::Window(1.0));
    let shots = edit("video = \"fps:4\"", "video = \"shots\"").unwrap();
    assert_eq!(shots.segment_by(), SegmentBy::Window(1.0), "an explicit window stays a window");
    let auto_shots = PipelineConfig::parse_unchecked(
        &kit::PIPELINE.replace("video = \"fps:4\"", "video = \"shots:2\"").replace("by = \"window\"", "by = \"auto\""),
    )
    .unwrap();
    assert_eq!(auto_shots.segment_by(), SegmentBy::Shots);
    assert_eq!(auto_shots.sampler.video.to_string(), "shots:2");

    for (from, to, named) in [
        ("by = \"window\"", "by = \"scenes\"", "segments.by"),
        ("by = \"window\"", "by = \"shots\"", "segments.by"),
        ("window_s = 1.0", "window_s = 0.0", "segments.window_s"),
        ("video = \"fps:4\"", "video = \"fps:0\"", "sampler.video"),
        ("video = \"fps:4\"", "video = \"sometimes\"", "sampler.video"),
        ("dim = 0", "dim = 0\nform = \"cube\"", "fusion.form"),
        ("dim = 0", "dim = 0\nform = \"yt8m\"", "fusion.dim"),
        ("visual = 1.0", "subtitles = 1.0", "fusion.weights.subtitles"),
        ("commit_every = 2", "commit_every = 0", "index.commit_every"),
    ] {
        let err = edit(from, to).unwrap_err();
        assert!(err.contains(named), "{to}: {err}");
    }
}
