//! Two processes opening a new database at once can both create its tables; the loser's
//! creation lands as an empty overwrite, and the winner's first write, built on the version it
//! created, is refused (seen with two shards on moto's S3). That refusal must be recognised as
//! a race (the indexer retries it on the latest versions), and the retry must leave every row
//! exactly once.

use lancedb::database::CreateTableMode;
use medley_store::{ItemSegments, MEDIA_TABLE, MediaRow, SegmentRow, Store, VectorDims};

fn row(hash: &str) -> MediaRow {
    MediaRow {
        content_hash: hash.into(),
        path: format!("/media/{hash}.mp4"),
        file_name: format!("{hash}.mp4"),
        kind: "video".into(),
        container: "mp4".into(),
        visual: Some(vec![0.5; 4]),
        description: "test".into(),
        models: "test:m".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_write_that_lost_a_creation_race_is_retried_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("db").to_string_lossy().into_owned();
    let dims = VectorDims { visual: 4, audio: 4, bridge: 4, music: 4, text: 4, clip: None, clap: None };
    let store = Store::open(&uri, dims).await.unwrap();

    // Another process's late creation of `media`: an empty overwrite of the same schema.
    let conn = lancedb::connect(&uri).execute().await.unwrap();
    let media = conn.open_table(MEDIA_TABLE).execute().await.unwrap();
    let schema = media.schema().await.unwrap();
    conn.create_empty_table(MEDIA_TABLE, schema).mode(CreateTableMode::Overwrite).execute().await.unwrap();

    let err = store.upsert_media(&[row("a"), row("b")]).await.expect_err("a write on the overwritten version");
    assert!(err.is_commit_race(), "not recognised as a race: {err}");

    // The retry, on the latest versions, writes the batch; writing it again changes nothing.
    store.refresh().await.unwrap();
    store.upsert_media(&[row("a"), row("b")]).await.unwrap();
    store.upsert_media(&[row("a"), row("b")]).await.unwrap();
    assert_eq!(store.count_media().await.unwrap(), 2);
    let segments = ItemSegments {
        content_hash: "b".into(),
        path: "/media/b.mp4".into(),
        kind: "video".into(),
        models: "test:m".into(),
        segments: vec![SegmentRow { segment: 0, end_s: 4.0, visual: Some(vec![0.5; 4]), ..Default::default() }],
    };
    store.upsert_segments(std::slice::from_ref(&segments)).await.unwrap();
    store.upsert_segments(&[segments]).await.unwrap();
    assert_eq!(store.count_segments().await.unwrap(), 1);
}
