//! The storage encoding of a `RevTree` (serde): a flat list of nodes in depth-first order,
//! each naming its parent by index. Flat, so a deep history (thousands of revisions) never
//! recurses in the encoder or decoder. Decoding checks every structural rule, so a corrupt
//! record is an error, not a broken tree.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::tree::{Node, RevStatus};
use crate::RevTree;

/// One node on disk: `[parent index or -1, pos, hash, flags]`; flags bit 0 = available,
/// bit 1 = deleted. Positions of non-roots are implied by their parent.
#[derive(Serialize, Deserialize)]
struct FlatNode(i64, u64, String, u8);

impl Serialize for RevTree {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let order = self.walk();
        let mut index = vec![0i64; self.nodes.len()];
        for (new, &old) in order.iter().enumerate() {
            index[old as usize] = new as i64;
        }
        let flat: Vec<FlatNode> = order
            .iter()
            .map(|&i| {
                let n = self.node(i);
                let flags = u8::from(n.status == RevStatus::Available) | (u8::from(n.deleted) << 1);
                let parent = n.parent.map_or(-1, |p| index[p as usize]);
                FlatNode(parent, n.pos, n.hash.to_string(), flags)
            })
            .collect();
        flat.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RevTree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RevTree, D::Error> {
        use serde::de::Error as _;
        let flat = Vec::<FlatNode>::deserialize(d)?;
        if flat.is_empty() {
            return Err(D::Error::custom("rev tree is empty"));
        }
        let mut tree = RevTree {
            nodes: Vec::with_capacity(flat.len()),
            roots: Vec::new(),
        };
        for (i, FlatNode(parent, pos, hash, flags)) in flat.into_iter().enumerate() {
            if flags > 3 {
                return Err(D::Error::custom("rev tree node has unknown flags"));
            }
            if pos > crate::rev::MAX_POS {
                return Err(D::Error::custom("rev tree node position is out of range"));
            }
            let parent = match parent {
                -1 => None,
                p if p >= 0 && (p as usize) < i => Some(p as u32),
                _ => return Err(D::Error::custom("rev tree node has a bad parent index")),
            };
            if let Some(p) = parent {
                if tree.node(p).pos + 1 != pos {
                    return Err(D::Error::custom(
                        "rev tree node position does not follow its parent",
                    ));
                }
                if tree
                    .node(p)
                    .children
                    .iter()
                    .any(|&c| *tree.node(c).hash == *hash)
                {
                    return Err(D::Error::custom(
                        "rev tree node has two children with one hash",
                    ));
                }
            }
            tree.nodes.push(Node {
                pos,
                hash: hash.into_boxed_str(),
                status: if flags & 1 == 1 {
                    RevStatus::Available
                } else {
                    RevStatus::Missing
                },
                deleted: flags & 2 == 2,
                parent,
                children: Vec::new(),
            });
            match parent {
                Some(p) => tree.adopt(p, i as u32),
                None => tree.roots.push(i as u32),
            }
        }
        tree.sort_roots();
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use crate::{RevPath, RevTree};

    #[test]
    fn round_trips() {
        let mut tree = RevTree::new(&RevPath::new(1, ["a", "b", "c"]).unwrap(), false);
        tree.merge(&RevPath::new(2, ["b", "d"]).unwrap(), true, 1000);
        let json = serde_json::to_string(&tree).unwrap();
        let back: RevTree = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tree);
        assert_eq!(back.winner(), tree.winner());
    }

    #[test]
    fn odd_hashes_and_position_zero_round_trip() {
        let long = "q".repeat(70_000);
        let mut tree = RevTree::new(&RevPath::new(0, ["", "a\u{0}b", "x\"y\n"]).unwrap(), false);
        tree.merge(&RevPath::new(0, ["", long.as_str()]).unwrap(), true, 1000);
        let json = serde_json::to_string(&tree).unwrap();
        let back: RevTree = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tree);
        assert_eq!(back.winner().to_string(), "2-x\"y\n");
    }

    #[test]
    fn deep_tree_does_not_recurse() {
        let hashes: Vec<String> = (0..20_000).map(|i| format!("h{i}")).collect();
        let tree = RevTree::new(&RevPath::new(1, hashes).unwrap(), false);
        let json = serde_json::to_string(&tree).unwrap();
        let back: RevTree = serde_json::from_str(&json).unwrap();
        assert_eq!(back.winner().to_string(), "20000-h19999");
    }

    #[test]
    fn corrupt_records_are_errors() {
        for bad in [
            "[]",
            r#"[[0,1,"a",1]]"#,
            r#"[[-1,1,"a",1],[0,3,"b",1]]"#,
            r#"[[-1,18446744073709551615,"a",1]]"#,
            r#"[[-1,1,"a",9]]"#,
            r#"[[-1,1,"a",1],[0,2,"b",1],[0,2,"b",1]]"#,
            r#"{"x":1}"#,
        ] {
            assert!(serde_json::from_str::<RevTree>(bad).is_err(), "{bad}");
        }
    }
}
