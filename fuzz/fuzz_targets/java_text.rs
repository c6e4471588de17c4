#![no_main]
// See crates/scanner/src/fuzzing.rs for what this target feeds.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scanner::fuzzing::run("java_text", data);
});
