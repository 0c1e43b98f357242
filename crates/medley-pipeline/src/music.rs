//! Music for a video through the language bridge, shared by `medley music-for` and
//! `GET /v1/music-for/{id}`: the video's labels (mapped into the text space, its `bridge`
//! vector) ranked against the music and audio items' tags (in the same space).

use medley_store::{SearchHit, Store};

use crate::query::{ItemVectorSet, QueryError, sql_quote};

/// The music and audio items (sound without pictures) whose tags best match the video's
/// labels, best first, never the video itself. `item` names the video in errors.
pub async fn music_for(
    store: &Store,
    item: &str,
    content_hash: &str,
    vectors: ItemVectorSet,
    k: usize,
) -> Result<Vec<SearchHit>, QueryError> {
    let Some(bridge) = vectors.into_iter().find(|(c, _)| *c == "bridge").and_then(|(_, v)| v) else {
        return Err(QueryError::NoLabels { item: item.into() });
    };
    let filter = format!("has_audio AND NOT has_video AND content_hash != {}", sql_quote(content_hash));
    Ok(store.search("bridge", &bridge, k, Some(&filter)).await?)
}

#[cfg(test)]
mod tests {
    use medley_store::{MediaRow, VectorDims};

    use super::*;
    use crate::query::resolve_vectors;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn row(i: u8, video: bool, audio: bool, bridge: Option<[f32; 4]>) -> MediaRow {
        MediaRow {
            content_hash: format!("{i:02x}").repeat(32),
            path: format!("/media/{i}"),
            kind: if video {
                "video"
            } else if audio {
                "audio"
            } else {
                "image"
            }
            .into(),
            video_codec: video.then(|| "h264".into()),
            audio_codec: audio.then(|| "aac".into()),
            bridge: bridge.map(Vec::from),
            models: "test".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn music_is_sound_without_pictures_ranked_by_the_bridge() -> TestResult {
        let dir = tempfile::tempdir()?;
        let dims = VectorDims { visual: 4, audio: 4, bridge: 4, music: 4, text: 4, clip: None, clap: None };
        let store = Store::open(&dir.path().join("db").display().to_string(), dims).await?;
        store
            .upsert_media(&[
                row(1, true, true, Some([1.0, 0.0, 0.0, 0.0])),   // the video
                row(2, false, true, Some([0.9, 0.1, 0.0, 0.0])),  // music close to it
                row(3, false, true, Some([0.0, 1.0, 0.0, 0.0])),  // music far from it
                row(4, true, true, Some([1.0, 0.0, 0.0, 0.0])),   // another video: not music
                row(5, false, false, Some([1.0, 0.0, 0.0, 0.0])), // an image: not music
                row(6, false, true, None),                        // sound without tags
            ])
            .await?;
        let video = "01".repeat(32);
        let (hash, vectors) = resolve_vectors(&store, &video[..8]).await?.ok_or("the video is indexed")?;
        assert_eq!(hash, video);
        let hits = music_for(&store, "the video", &hash, vectors, 10).await?;
        let ranked: Vec<&str> = hits.iter().map(|h| &h.content_hash[..2]).collect();
        assert_eq!(ranked, ["02", "03"]);

        // Sound without tags has nothing to match with.
        let (hash, vectors) = resolve_vectors(&store, &"06".repeat(32)).await?.ok_or("indexed")?;
        let err = music_for(&store, "06", &hash, vectors, 10).await.err().ok_or("an error")?;
        assert!(matches!(err, QueryError::NoLabels { .. }), "{err}");
        assert!(resolve_vectors(&store, "abcdef").await?.is_none());
        Ok(())
    }
}
