//! Index upkeep after writes: a vector column past the row threshold gets an IVF_PQ index
//! (columns that are mostly null do not), later rows are added to it, and searches through the
//! index find rows written before and after it was built; `optimize` keeps the index's partitions
//! at their target size; columns kept in memory answer searches and follow the table.

use lance::index::DatasetIndexExt;
use medley_store::{MediaRow, Store, TARGET_PARTITION_ROWS, VECTOR_INDEX_MIN_ROWS, VectorDims};

/// A deterministic pseudo-random unit vector per item (splitmix64 per component).
fn unit(i: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..32u64)
        .map(|d| {
            let mut z = (i as u64 * 32 + d).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn row(i: usize) -> MediaRow {
    MediaRow {
        content_hash: format!("{i:08x}"),
        path: format!("/media/{i}.mp4"),
        file_name: format!("{i}.mp4"),
        kind: "video".into(),
        container: "mp4".into(),
        visual: Some(unit(i)),
        description: "test".into(),
        models: "test:m".into(),
        ..Default::default()
    }
}

/// A new database in a temporary folder (kept while the folder lives), its URI, and the store.
async fn new_store() -> (tempfile::TempDir, String, Store) {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("db").to_string_lossy().into_owned();
    let dims = VectorDims { visual: 32, audio: 8, bridge: 8, music: 8, text: 8, clip: None, clap: None };
    let store = Store::open(&uri, dims).await.unwrap();
    (dir, uri, store)
}

#[tokio::test]
async fn indexes_are_built_full_text_at_once_vector_past_the_threshold_and_kept_up_to_date() {
    let (_dir, _, store) = new_store().await;
    let first: Vec<MediaRow> = (0..VECTOR_INDEX_MIN_ROWS - 1).map(row).collect();
    store.upsert_media(&first).await.unwrap();
    // Below the threshold: the full-text indexes (built whenever missing), no vector index.
    let report = store.maintain_indexes().await.unwrap();
    assert!(report.iter().any(|l| l.starts_with("media: full-text index on")), "{report:?}");
    assert!(!report.iter().any(|l| l.contains("vector index")), "below the threshold: {report:?}");

    store.upsert_media(&[row(VECTOR_INDEX_MIN_ROWS - 1)]).await.unwrap();
    let report = store.maintain_indexes().await.unwrap();
    assert!(report.iter().any(|l| l.starts_with("media: vector index on visual")), "{report:?}");
    assert!(!report.iter().any(|l| l.contains("on audio")), "an all-null column gets no index: {report:?}");

    let later: Vec<MediaRow> = (VECTOR_INDEX_MIN_ROWS..VECTOR_INDEX_MIN_ROWS + 50).map(row).collect();
    store.upsert_media(&later).await.unwrap();
    let report = store.maintain_indexes().await.unwrap();
    assert!(report.contains(&"media: new rows added to its indexes".to_string()), "{report:?}");
    for i in [7, VECTOR_INDEX_MIN_ROWS + 20] {
        let hits = store.search("visual", &unit(i), 1, None).await.unwrap();
        assert_eq!(hits[0].content_hash, format!("{i:08x}"), "item {i}");
        assert!(hits[0].score > 0.999);
    }
}

/// IVF partitions of the vector index on `column` of the `media` table under `uri`.
async fn partitions(uri: &str, column: &str) -> usize {
    let dataset = lance::Dataset::open(&format!("{uri}/media.lance")).await.unwrap();
    let stats: serde_json::Value =
        serde_json::from_str(&dataset.index_statistics(&format!("{column}_idx")).await.unwrap()).unwrap();
    stats["indices"][0]["num_partitions"].as_u64().unwrap() as usize
}

#[tokio::test]
async fn optimize_keeps_partitions_near_their_target_size() {
    let (_dir, uri, store) = new_store().await;
    let rows = 2 * VECTOR_INDEX_MIN_ROWS;
    store.upsert_media(&(0..rows).map(row).collect::<Vec<_>>()).await.unwrap();
    store.maintain_indexes().await.unwrap();
    let target = rows / TARGET_PARTITION_ROWS as usize;
    assert_eq!(partitions(&uri, "visual").await, target, "built for the target size");
    store.upsert_media(&(rows..rows + 500).map(row).collect::<Vec<_>>()).await.unwrap();
    store.maintain_indexes().await.unwrap();
    store.optimize().await.unwrap();
    // Before the target was recorded, the optimisation joined them towards Lance's default
    // (8,192 rows): 2 partitions here, and every search compared every row.
    let kept = partitions(&uri, "visual").await;
    assert!(kept >= target, "{kept} partitions after optimize, built with {target}");
    let hits = store.search("visual", &unit(rows + 20), 1, None).await.unwrap();
    assert_eq!(hits[0].content_hash, format!("{:08x}", rows + 20), "rows added later are found");
}

/// An index an older medley built and an optimisation collapsed (a few partitions holding
/// thousands of rows each) is rebuilt for the target by the upkeep after the next index run,
/// and kept so by `optimize`.
#[tokio::test]
async fn optimize_rebuilds_a_collapsed_vector_index() {
    use lancedb::index::{Index, vector::IvfPqIndexBuilder};
    let (_dir, uri, store) = new_store().await;
    let rows = 2 * VECTOR_INDEX_MIN_ROWS;
    store.upsert_media(&(0..rows).map(row).collect::<Vec<_>>()).await.unwrap();
    let table = lancedb::connect(&uri).execute().await.unwrap().open_table("media").execute().await.unwrap();
    let collapsed = IvfPqIndexBuilder::default().distance_type(lancedb::DistanceType::Cosine).num_partitions(2);
    table.create_index(&["visual"], Index::IvfPq(collapsed)).execute().await.unwrap();
    assert_eq!(partitions(&uri, "visual").await, 2);
    store.refresh().await.unwrap();
    let report = store.maintain_indexes().await.unwrap();
    assert!(report.iter().any(|l| l.starts_with("media: vector index on visual rebuilt")), "{report:?}");
    assert_eq!(partitions(&uri, "visual").await, rows / TARGET_PARTITION_ROWS as usize);
    let report = store.optimize().await.unwrap();
    assert!(!report.iter().any(|l| l.contains("rebuilt")), "a healthy index is left alone: {report:?}");
    assert_eq!(partitions(&uri, "visual").await, rows / TARGET_PARTITION_ROWS as usize);
    let hits = store.search("visual", &unit(123), 1, None).await.unwrap();
    assert_eq!(hits[0].content_hash, format!("{:08x}", 123));
}

#[tokio::test]
async fn columns_kept_in_memory_answer_unfiltered_searches_and_follow_refreshes() {
    let (_dir, uri, store) = new_store().await;
    let n = 12_000;
    let rows: Vec<MediaRow> = (0..n).map(row).collect();
    store.upsert_media(&rows).await.unwrap();
    // Per row: f32 coordinates, and an int8 copy with a scale and a code sum for the scan.
    let footprint = |width: usize| n * (width * 5 + 8);
    let bytes = footprint(32);

    // Over the budget: nothing kept, searches stay with LanceDB.
    assert!(store.keep_in_memory(&["visual"], bytes - 1).await.unwrap().is_empty());
    let kept = store.keep_in_memory(&["visual", "audio", "no_such_column"], bytes + footprint(8)).await.unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!((kept[0].column.as_str(), kept[0].rows), ("visual", n));
    assert_eq!(kept[0].lists, 110, "about sqrt(rows) lists");
    assert_eq!((kept[1].column.as_str(), kept[1].rows), ("audio", 0), "an all-null column keeps no rows");

    // Each item finds itself first, with the hit columns LanceDB would return; the ten nearest
    // mostly agree with LanceDB's exact search (a filter that keeps every row sends it there).
    let (mut agree, mut total) = (0, 0);
    for i in (0..n).step_by(601) {
        let hits = store.search("visual", &unit(i), 10, None).await.unwrap();
        assert_eq!(hits[0].content_hash, format!("{i:08x}"));
        assert_eq!((hits[0].path.as_str(), hits[0].kind.as_str()), (format!("/media/{i}.mp4").as_str(), "video"));
        assert!(hits[0].score > 0.999 && hits.windows(2).all(|w| w[0].score >= w[1].score));
        let exact = store.search("visual", &unit(i), 10, Some("kind = 'video'")).await.unwrap();
        agree += hits.iter().filter(|h| exact.iter().any(|e| e.content_hash == h.content_hash)).count();
        total += exact.len();
        let (memory, lance) = (hits[1].score, exact.iter().find(|e| e.content_hash == hits[1].content_hash));
        if let Some(e) = lance {
            assert!((memory - e.score).abs() < 1e-4, "the same cosine: {memory} vs {}", e.score);
        }
    }
    let recall = agree as f64 / total as f64;
    assert!(recall >= 0.8, "recall@10 against the exact search: {recall:.3}");

    // Another handle writes a new item and changes one: the kept copy follows on refresh.
    let writer = Store::open_existing(&uri).await.unwrap();
    // Re-indexed by other models (rows by the same models are left as they are).
    let mut moved = row(5);
    moved.visual = Some(unit(n + 7));
    moved.models = "test:m2".into();
    writer.upsert_media(&[row(n + 1), moved]).await.unwrap();
    let before = store.search("visual", &unit(n + 1), 1, None).await.unwrap();
    assert_ne!(before[0].content_hash, format!("{:08x}", n + 1), "not seen before the refresh");
    store.refresh().await.unwrap();
    let after = store.search("visual", &unit(n + 1), 1, None).await.unwrap();
    assert_eq!(after[0].content_hash, format!("{:08x}", n + 1));
    let hits = store.search("visual", &unit(n + 7), 1, None).await.unwrap();
    assert_eq!((hits[0].content_hash.as_str(), hits[0].score > 0.999), ("00000005", true), "item 5's new vector");

    // A row another tool deletes is gone after the next refresh; the copy holds what the table holds.
    let media = lancedb::connect(&uri).execute().await.unwrap().open_table("media").execute().await.unwrap();
    media.delete("content_hash = '0000000a'").await.unwrap();
    store.refresh().await.unwrap();
    let hits = store.search("visual", &unit(10), 1, None).await.unwrap();
    assert!(hits[0].content_hash != "0000000a" && hits[0].score < 0.999, "{:?}", hits[0]);
    let kept = store.keep_in_memory(&["visual"], bytes * 2).await.unwrap();
    assert_eq!(kept[0].rows, n, "{n} + 1 written - 1 deleted");
    for i in [0, 11, n - 1, n + 1] {
        assert_eq!(store.search("visual", &unit(i), 1, None).await.unwrap()[0].content_hash, format!("{i:08x}"));
    }
}
