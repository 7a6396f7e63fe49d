//! Unit tests of the run-level wire types (`Totals`).

use super::*;

#[test]
fn totals_merge_adds_maps_and_counts() {
    let mut a = Totals {
        attempted: 2,
        opened: 1,
        failed: 1,
        ..Default::default()
    };
    a.failures.insert("http_429".into(), 1);
    let mut b = Totals {
        attempted: 3,
        opened: 3,
        closed: 1,
        ..Default::default()
    };
    b.failures.insert("http_429".into(), 2);
    b.closes.insert("client".into(), 1);
    a.merge(&b);
    assert_eq!((a.attempted, a.opened, a.failed, a.closed), (5, 4, 1, 1));
    assert_eq!(a.failures["http_429"], 3);
    assert_eq!(a.open(), 3);
}
