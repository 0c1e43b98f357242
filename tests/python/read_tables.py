"""Open the tables medley wrote, the way a researcher would, and report them as JSON.

Usage: python read_tables.py DB_DIR

For every `media` row: its facts, labels, and for each vector column the width, whether it
is null, whether it holds NaN, and its L2 norm (read as NumPy arrays). Also the `failures`
rows, and for each row with a `bridge` vector, the top hit of a cosine vector search with that
vector (which should be the row itself). Every table's columns against docs/schema.md. With
full-text indexes: a BM25 search for "cat" over
the indexed columns. The `segments` rows with their time ranges and vector norms.
"""

import json
import pathlib
import re
import sys

import lancedb
import numpy as np


def documented_columns():
    """Column names per table, from the tables in docs/schema.md (first cell of each row)."""
    doc = pathlib.Path(__file__).resolve().parents[2] / "docs" / "schema.md"
    columns, table = {}, None
    for line in doc.read_text().splitlines():
        heading = re.match(r"## `(\w+)`", line)
        if heading:
            table = heading.group(1)
            columns[table] = []
        elif table and line.startswith("| `"):
            columns[table] += re.findall(r"`(\w+)`", line.split("|")[1])
    return columns


# Documented columns only some pipelines write (`clip`: with an image-text model; `clap`: with
# an audio-text model).
OPTIONAL_COLUMNS = {"clip", "clap"}


def schema_differences(db):
    """For every table in the database: documented columns it lacks, and columns not documented."""
    documented, out = documented_columns(), {}
    for name in db.table_names():
        actual = db.open_table(name).schema.names
        expected = documented.get(name)
        if expected is None:
            out[name] = "table not documented"
        else:
            missing, undocumented = set(expected) - set(actual) - OPTIONAL_COLUMNS, set(actual) - set(expected)
            if missing or undocumented:
                out[name] = {"missing": sorted(missing), "undocumented": sorted(undocumented)}
    return out


def main():
    db = lancedb.connect(sys.argv[1])
    names = db.table_names()
    media = db.open_table("media")
    table = media.to_arrow()
    rows = table.to_pylist()
    out = {"schema_version": (table.schema.metadata or {}).get(b"medley.schema_version", b"").decode(), "media": [], "failures": []}
    vector_columns = [c for c in ("visual", "audio", "music", "text", "bridge", "semantic", "sound_bridge",
                                  "music_bridge", "ocr") if c in table.schema.names]
    for column in vector_columns:
        col = table.column(column).combine_chunks()
        out[f"{column}_width"] = col.type.list_size
        present = [i for i, v in enumerate(col.is_valid().to_pylist()) if v]
        # The fixed-size list column, non-null rows only, as one 2-d float32 NumPy array.
        matrix = np.asarray(col.filter(col.is_valid()).flatten().to_numpy(), dtype=np.float32).reshape(len(present), col.type.list_size)
        for row in rows:
            row[f"_{column}"] = {"null": True}
        for i, vec in zip(present, matrix):
            rows[i][f"_{column}"] = {"null": False, "dim": int(vec.shape[0]), "nan": bool(np.isnan(vec).any()),
                                     "norm": float(np.linalg.norm(vec))}
    for row in rows:
        item = {k: row[k] for k in ("content_hash", "path", "file_name", "kind", "container", "duration_s", "has_video",
                                    "has_audio", "width", "height", "fps", "rotation", "frames_sampled", "audio_windows", "labels",
                                    "music_tags", "transcript", "language", "description", "models")}
        # Columns added within schema version 1: absent from tables written before them.
        item.update({k: row.get(k) for k in ("partial", "declared_duration_s", "sound_tags", "ocr_text")})
        item.update({c: row[f"_{c}"] for c in vector_columns})
        if row.get("semantic") is not None:
            # What `medley search` ranks by: an item's own vector finds it first.
            query = np.asarray(row["semantic"], dtype=np.float32)
            hits = (media.search(query, vector_column_name="semantic")
                    .metric("cosine").where("semantic IS NOT NULL", prefilter=True).limit(1).to_list())
            item["semantic_self_top"] = hits[0]["content_hash"] if hits else None
        if row["bridge"] is not None:
            query = np.asarray(row["bridge"], dtype=np.float32)
            hits = (media.search(query, vector_column_name="bridge")
                    .metric("cosine").where("bridge IS NOT NULL", prefilter=True).limit(1).to_list())
            item["self_search_top"] = hits[0]["content_hash"] if hits else None
            # The same query as `medley similar HASH --by bridge -k 3`: nearest others.
            others = (media.search(query, vector_column_name="bridge").metric("cosine")
                      .where(f"bridge IS NOT NULL AND content_hash != '{row['content_hash']}'", prefilter=True)
                      .limit(3).to_list())
            item["similar_top3"] = [h["content_hash"] for h in others]
        out["media"].append(item)
    out["tables"] = sorted(names)
    out["schema_differences"] = schema_differences(db)
    out["runs"] = db.open_table("runs").to_arrow().to_pylist() if "runs" in names else []
    fts_columns = [ix.columns[0] for ix in media.list_indices() if ix.index_type == "FTS"]
    if fts_columns:
        hits = media.search("cat", query_type="fts", fts_columns=fts_columns).limit(20).to_list()
        out["fts_cat"] = [h["file_name"] for h in hits]
        out["fts_cat_hits"] = [[h["content_hash"], h["_score"]] for h in hits]
    if "segments" in names:
        segments = db.open_table("segments").to_arrow()
        out["segments_schema_version"] = (segments.schema.metadata or {}).get(b"medley.schema_version", b"").decode()
        out["segments_columns"] = segments.schema.names
        out["segments"] = []
        for row in segments.to_pylist():
            item = {k: row[k] for k in ("segment_id", "content_hash", "path", "kind", "segment", "start_s", "end_s",
                                        "duration_s", "frames_sampled", "labels", "transcript")}
            item.update({k: row.get(k) for k in ("sound_tags", "ocr_text")})
            for column in ("visual", "audio", "music", "text", "bridge", "semantic", "sound_bridge"):
                v = row.get(column)
                item[column] = None if v is None else float(np.linalg.norm(np.asarray(v, dtype=np.float32)))
            out["segments"].append(item)
    if "failures" in names:
        for row in db.open_table("failures").to_arrow().to_pylist():
            out["failures"].append({k: row[k] for k in ("path", "content_hash", "stage", "error_kind", "message")})
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    main()
