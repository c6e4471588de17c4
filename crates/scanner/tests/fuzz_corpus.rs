//! Replays every fuzz target's corpus (`fuzz/corpus/<target>/`: the seeds plus every input
//! the fuzzer kept or found crashing) through the same entry points the fuzz targets call, on
//! stable Rust, so a fixed crash stays fixed. Longer fuzzing: docs/fuzzing.md.

use std::path::Path;

#[test]
fn every_corpus_input_is_handled_without_panicking() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut total = 0;
    for target in scanner::fuzzing::TARGETS {
        let dir = corpus.join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{target}: empty corpus");
        for input in &inputs {
            let bytes = std::fs::read(input).unwrap();
            assert!(scanner::fuzzing::run(target, &bytes), "{target}");
            total += 1;
        }
    }
    // Every target directory is a target (a renamed target must take its corpus along).
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let name = entry.unwrap().file_name();
        let name = name.to_string_lossy();
        assert!(
            scanner::fuzzing::TARGETS.contains(&name.as_ref()),
            "fuzz/corpus/{name} belongs to no target"
        );
    }
    assert!(total >= scanner::fuzzing::TARGETS.len());
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    for target in scanner::fuzzing::TARGETS {
        let file = targets.join(format!("{target}.rs"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            text.contains(&format!("run(\"{target}\", data)")),
            "{} does not call its entry point",
            file.display()
        );
    }
}
