//! Properties of the collation: it is a total order, and the key encoding sorts exactly as
//! it compares, so an index kept in byte order is in collation order.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use settee_query::{collate, encode_key, skip_key};
use std::cmp::Ordering;

fn arb_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                'a', 'A', 'b', 'B', 'é', 'E', 'e', 'ß', 's', ' ', '-', '_', '1', '½', '\u{1}', 'ø',
                'z', '中'
            ]),
            any::<char>(),
        ],
        0..6,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1000i64..1000).prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((arb_string(), inner), 0..3)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn key(v: &Value) -> Vec<u8> {
    let mut k = Vec::new();
    encode_key(v, &mut k);
    k
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encoded_keys_sort_as_values_collate(a in arb_value(), b in arb_value()) {
        prop_assert_eq!(key(&a).cmp(&key(&b)), collate(&a, &b), "{} vs {}", a, b);
    }

    #[test]
    fn collation_is_antisymmetric_and_transitive(a in arb_value(), b in arb_value(), c in arb_value()) {
        prop_assert_eq!(collate(&a, &b), collate(&b, &a).reverse());
        if collate(&a, &b) != Ordering::Greater && collate(&b, &c) != Ordering::Greater {
            prop_assert_ne!(collate(&a, &c), Ordering::Greater);
        }
    }

    #[test]
    fn keys_are_self_delimiting(values in prop::collection::vec(arb_value(), 1..4), tail in "[a-z]{0,5}") {
        let mut all = Vec::new();
        for v in &values {
            encode_key(v, &mut all);
        }
        all.extend_from_slice(tail.as_bytes());
        let mut at = 0;
        for v in &values {
            let n = skip_key(&all[at..]).unwrap();
            let expected = key(v);
            prop_assert_eq!(&all[at..at + n], expected.as_slice());
            at += n;
        }
        prop_assert_eq!(&all[at..], tail.as_bytes());
    }
}
