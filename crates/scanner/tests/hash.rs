//! `runtime-extractor hash`: the real binary, values from arguments and from standard input,
//! against the reference's hash vectors (docs/spec: `rhel`, `Java`, and the gatherer's `""`).

use std::io::Write as _;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_runtime-extractor");

#[test]
fn hashes_arguments_in_order() {
    let out = Command::new(BIN)
        .args(["hash", "rhel", "Java", ""])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "yqx1WBefoIAq  rhel\nwbpgzhNYZQOi  Java\n47DEQpj8HBSa  \n"
    );
}

#[test]
fn hashes_standard_input_one_value_a_line() {
    let mut child = Command::new(BIN)
        .arg("hash")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Node.js\r\nGolang\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "H8DHhTMugPuT  Node.js\nUOVueXxKyJ95  Golang\n"
    );
}
