//! medley-ray on a two-node Ray cluster (head 127.0.0.2, worker 127.0.0.3, logical GPUs) with
//! an S3-compatible server on loopback: rows equal one `medley index` process's, tasks on both
//! nodes with their GPU ids, a worker and a raylet killed mid-task, every file exactly once, a
//! commit run twice adding nothing, a re-run indexing nothing, and no traffic off loopback.
//! The scenario and its checks are in tests/python/ray_cluster.py (Ray is driven from Python);
//! this runs it with the built `medley`.

mod common;

use std::process::Command;

use common::{env_path, medley, stdout_json};

#[test]
fn medley_ray_indexes_on_two_nodes_exactly_once_through_kills() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/ray_cluster.py");
    let out = Command::new(env_path("MEDLEY_TEST_PYTHON"))
        .arg(script)
        .env("MEDLEY_BIN", medley().get_program())
        .env("MEDLEY_TEST_MEDIA", env_path("MEDLEY_TEST_MEDIA"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ray_cluster.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let report = stdout_json(&out);
    // Printed for the record: the two-node run's time next to one process's on the same files.
    println!("{report:#}");
    assert_eq!(report["run_a"]["indexed"], 12, "{report}");
}
