//! The file server's request reading (`proto::webfiles`): never panics,
//! and a path it accepts never holds a segment that could leave the tree.

use crate::proto::webfiles::{head_end, parse_request, range, url_path};

pub fn webfiles(data: &[u8]) {
    let Ok(Some(end)) = head_end(data) else {
        return;
    };
    let Some(head) = data.get(..end) else {
        panic!("head_end past the input");
    };
    let Ok(req) = parse_request(head) else {
        return;
    };
    if let Ok(path) = url_path(req.target) {
        for seg in &path.segments {
            assert!(!seg.is_empty() && seg != b"." && seg != b"..");
            assert!(!seg.contains(&b'/') && !seg.contains(&0));
        }
    }
    if let Some(spec) = req.range {
        for size in [0, 1, 100, u64::MAX] {
            if let crate::proto::webfiles::RangeAnswer::Part { start, end } = range(spec, size) {
                assert!(start <= end && end < size);
            }
        }
    }
}
