//! Music for a video, shared by `medley music-for` and `GET /v1/music-for/{id}`: the video's
//! labels (mapped into the text space, its `bridge` vector) ranked against the music and audio
//! items' tags (in the same space); with an audio-text model's `clap` column, also the video's
//! labels read by that model's text tower ranked against the sounds themselves, the two
//! rankings fused by reciprocal rank.

use medley_models::TextEncoder;
use medley_store::{CLAP_COLUMN, Label, SearchHit, Store};

use crate::query::{ItemVectorSet, QueryError, encode_query, fuse_ranks, sql_quote};

/// How many of a video's labels the audio-text model reads.
const PROMPT_LABELS: usize = 5;

/// What an audio-text model's text tower reads for music to go with a video: its pictures'
/// top labels (each label's first name). `None` without labels.
pub fn music_prompt(labels: &[Label]) -> Option<String> {
    let names: Vec<&str> =
        labels.iter().take(PROMPT_LABELS).map(|l| l.label.split(',').next().unwrap_or_default().trim()).collect();
    (!names.is_empty()).then(|| format!("music for a video of {}", names.join(", ")))
}

/// A video's [`music_prompt`] in the audio-text space of `tower` (the text tower of the model
/// that filled the table's `clap` column); `None` without labels.
pub fn music_query(tower: &TextEncoder, labels: &[Label]) -> Result<Option<Vec<f32>>, QueryError> {
    music_prompt(labels).map(|p| encode_query(tower, &p)).transpose()
}

/// The music and audio items (sound without pictures) that best go with the video, best first,
/// never the video itself: by its `bridge` against their tags, and, given `clap` (the
/// [`music_prompt`] in the audio-text space) and a table with a `clap` column, by that against
/// the sounds' own `clap` vectors. With both rankings, scores are reciprocal-rank sums (at most
/// 2/61); with one, its cosine. `item` names the video in errors.
pub async fn music_for(
    store: &Store,
    item: &str,
    content_hash: &str,
    vectors: ItemVectorSet,
    clap: Option<&[f32]>,
    k: usize,
) -> Result<Vec<SearchHit>, QueryError> {
    let bridge = vectors.into_iter().find(|(c, _)| *c == "bridge").and_then(|(_, v)| v);
    let clap = clap.filter(|_| store.clap_space().is_some());
    if bridge.is_none() && clap.is_none() {
        return Err(QueryError::NoLabels { item: item.into() });
    }
    let filter = format!("has_audio AND NOT has_video AND content_hash != {}", sql_quote(content_hash));
    let mut lists = Vec::new();
    if let Some(bridge) = &bridge {
        lists.push(store.search("bridge", bridge, k, Some(&filter)).await?);
    }
    if let Some(query) = clap {
        lists.push(store.search(CLAP_COLUMN, query, k, Some(&filter)).await?);
    }
    lists.retain(|l| !l.is_empty());
    Ok(match lists.len() {
        0 => Vec::new(),
        1 => lists.remove(0),
        _ => fuse_ranks(lists, k),
    })
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
        let hits = music_for(&store, "the video", &hash, vectors, None, 10).await?;
        let ranked: Vec<&str> = hits.iter().map(|h| &h.content_hash[..2]).collect();
        assert_eq!(ranked, ["02", "03"]);

        // Sound without tags has nothing to match with.
        let (hash, vectors) = resolve_vectors(&store, &"06".repeat(32)).await?.ok_or("indexed")?;
        let err = music_for(&store, "06", &hash, vectors, None, 10).await.err().ok_or("an error")?;
        assert!(matches!(err, QueryError::NoLabels { .. }), "{err}");
        assert!(resolve_vectors(&store, "abcdef").await?.is_none());
        Ok(())
    }
}
