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
