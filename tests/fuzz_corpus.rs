//! Replays every committed fuzz corpus file (fuzz/corpus/<target>/) and
//! every finding (fuzz/regressions/<target>/, named for what it broke)
//! through the same check the fuzz target runs (rkite::fuzz_checks), on
//! stable, so `make test` keeps every input the fuzzer found interesting, and
//! every bug it found, passing. FUZZ_CORPUS=<dir> replays another tree laid
//! out the same way (such as fuzz/corpus-raw from fuzz/seed.py).

use std::path::{Path, PathBuf};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn corpus_root() -> PathBuf {
    match std::env::var_os("FUZZ_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => manifest_dir().join("fuzz/corpus"),
    }
}

/// The files in `dir`, sorted; none when it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|entry| entry.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file());
    files.sort();
    files
}

#[test]
fn every_corpus_file_passes_its_check() {
    let root = corpus_root();
    let regressions = manifest_dir().join("fuzz/regressions");
    let mut total = 0;
    let mut failed = Vec::new();
    for (target, check) in rkite::fuzz_checks::TARGETS {
        let dir = root.join(target);
        let mut files = files_in(&dir);
        assert!(
            !files.is_empty(),
            "no corpus for {target} in {}",
            dir.display()
        );
        files.extend(files_in(&regressions.join(target)));
        for file in &files {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            if outcome.is_err() {
                failed.push(file.display().to_string());
            }
        }
        eprintln!("{target}: {} corpus and regression files pass", files.len());
        total += files.len();
    }
    assert!(total > 0);
    assert!(failed.is_empty(), "these fail their checks: {failed:#?}");
}
