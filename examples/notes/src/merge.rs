//! The suggested merge of a conflict's versions: a line merge that keeps the lines the
//! versions share once and marks where they differ, as `diff3` and git mark a conflict
//! (`<<<<<<< this device`, `=======`, `>>>>>>> device b`), for the person to finish. The
//! versions' common ancestor is not at hand (the store may have dropped its body), so the
//! merge is two-way: a line only one side has is shown in a marked block, never dropped.
//! Choosing and writing the result is the page's and `notes::resolve`'s.

/// Above this many line pairs, the merge does not align lines (the table would be large)
/// and marks both texts whole.
const MAX_CELLS: usize = 4_000_000;

/// Merges `a` and `b` line by line: shared lines once, each differing stretch as a marked
/// block naming its sides.
pub(crate) fn merge_lines(a: &str, b: &str, label_a: &str, label_b: &str) -> String {
    if a == b {
        return a.to_owned();
    }
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out: Vec<String> = Vec::new();
    let block = |xs: &[&str], ys: &[&str], out: &mut Vec<String>| {
        if xs.is_empty() && ys.is_empty() {
            return;
        }
        out.push(format!("<<<<<<< {label_a}"));
        out.extend(xs.iter().map(|s| (*s).to_owned()));
        out.push("=======".to_owned());
        out.extend(ys.iter().map(|s| (*s).to_owned()));
        out.push(format!(">>>>>>> {label_b}"));
    };
    if la.len().saturating_mul(lb.len()) > MAX_CELLS {
        block(&la, &lb, &mut out);
        return out.join("\n");
    }
    // Longest common subsequence of lines: lcs[i][j] is its length for la[i..], lb[j..].
    let (n, m) = (la.len(), lb.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if la[i] == lb[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let (mut hunk_a, mut hunk_b) = (i, j);
    while i < n && j < m {
        if la[i] == lb[j] {
            block(&la[hunk_a..i], &lb[hunk_b..j], &mut out);
            out.push(la[i].to_owned());
            i += 1;
            j += 1;
            (hunk_a, hunk_b) = (i, j);
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    block(&la[hunk_a..], &lb[hunk_b..], &mut out);
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_lines_are_kept_once_and_differences_marked() {
        let a = "Shopping\nbread\nmilk\neggs\nend";
        let b = "Shopping\nbread\napples\nend";
        let m = merge_lines(a, b, "this device", "device b");
        assert_eq!(
            m,
            "Shopping\nbread\n<<<<<<< this device\nmilk\neggs\n=======\napples\n>>>>>>> device b\nend"
        );
        assert_eq!(m.matches("Shopping").count(), 1);
        assert_eq!(m.matches("bread").count(), 1);
    }

    #[test]
    fn a_line_one_side_added_is_marked_not_dropped() {
        let m = merge_lines("a\nc", "a\nb\nc", "x", "y");
        assert_eq!(m, "a\n<<<<<<< x\n=======\nb\n>>>>>>> y\nc");
        assert_eq!(merge_lines("same", "same", "x", "y"), "same");
    }
}
