//! TODO: being written.
use super::{Detection, Root};
use crate::process::ProcessFacts;

pub fn detect(_root: &Root, _process: &ProcessFacts) -> Option<Detection> {
    None
}
