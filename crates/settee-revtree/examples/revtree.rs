//! Two replicas edit one note while offline, then exchange histories: both pick the same
//! winner and keep the other edit as a conflict.

use serde_json::json;
use settee_revtree::{new_rev_hash, RevPath, RevTree};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let body = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
    let first = new_rev_hash(None, false, &body(json!({"title": "groceries"})), &[]);
    let base = RevPath::child_of(None, &first)?;
    let base_rev = base.leaf();

    let laptop_edit = new_rev_hash(
        Some(&base_rev),
        false,
        &body(json!({"title": "groceries", "items": ["milk"]})),
        &[],
    );
    let phone_edit = new_rev_hash(
        Some(&base_rev),
        false,
        &body(json!({"title": "groceries", "items": ["eggs"]})),
        &[],
    );
    let laptop = RevPath::child_of(Some(&base_rev), &laptop_edit)?;
    let phone = RevPath::child_of(Some(&base_rev), &phone_edit)?;

    let mut on_laptop = RevTree::new(&base, false);
    on_laptop.merge(&laptop, false, 1000);
    on_laptop.merge(&phone, false, 1000);
    let mut on_phone = RevTree::new(&base, false);
    on_phone.merge(&phone, false, 1000);
    on_phone.merge(&laptop, false, 1000);

    println!(
        "laptop sees winner {} conflicts {:?}",
        on_laptop.winner(),
        on_laptop.conflicts()
    );
    println!(
        "phone  sees winner {} conflicts {:?}",
        on_phone.winner(),
        on_phone.conflicts()
    );
    assert_eq!(on_laptop.winner(), on_phone.winner());
    Ok(())
}
