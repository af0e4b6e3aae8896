//! Text tables for people: each column padded to its widest cell, left- or right-aligned,
//! two spaces between columns, no trailing blanks. Shared by the run's table
//! ([`crate::report`]) and the seed's table ([`crate::seed`]).

use std::fmt::Write as _;

/// `rows` (the header first) as lines; `left(c)` says whether column `c` is left-aligned.
pub(crate) fn render(rows: &[Vec<String>], left: impl Fn(usize) -> bool) -> String {
    let ncol = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..ncol)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let w = widths[c];
            if left(c) {
                let _ = write!(line, "{cell:<w$}  ");
            } else {
                let _ = write!(line, "{cell:>w$}  ");
            }
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn pads_to_the_widest_cell_and_trims() {
        let rows = vec![
            vec!["a".to_string(), "1".to_string(), "x".to_string()],
            vec!["bbb".to_string(), "22".to_string(), "".to_string()],
        ];
        assert_eq!(super::render(&rows, |c| c != 1), "a     1  x\nbbb  22\n");
    }
}
