//! Aligned text tables for people at a terminal (`inventory`, `findings`).

use std::io::Write;

/// How a table is laid out: which column is right-aligned (a count), and which one is cut
/// to a width (a long path) so the rest stays on screen.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub right_aligned: usize,
    pub capped: (usize, usize),
}

/// Writes `headers` and `rows`, columns two spaces apart and padded to their widest cell,
/// cells too wide for a capped column cut with `…`; the last column is not padded.
pub fn write<const N: usize>(
    out: &mut impl Write,
    headers: &[&str; N],
    rows: &[[String; N]],
    layout: Layout,
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let (col, max) = layout.capped;
    if let Some(w) = widths.get_mut(col) {
        *w = (*w).min(max);
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| -> std::io::Result<()> {
        for (i, (c, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                out.write_all(b"  ")?;
            }
            let shown: String = if c.chars().count() > *w {
                c.chars().take(w.saturating_sub(1)).chain(['…']).collect()
            } else {
                c.to_owned()
            };
            if i == layout.right_aligned {
                write!(out, "{shown:>w$}", w = *w)?;
            } else if i + 1 == N {
                write!(out, "{shown}")?;
            } else {
                write!(out, "{shown:<w$}", w = *w)?;
            }
        }
        writeln!(out)
    };
    line(&mut headers.iter().copied())?;
    for r in rows {
        line(&mut r.iter().map(String::as_str))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_counts_align_right_and_long_cells_are_cut() {
        let rows = [
            ["a".to_owned(), "7".to_owned(), "x".repeat(12)],
            ["bbb".to_owned(), "1234".to_owned(), "end".to_owned()],
        ];
        let mut out = Vec::new();
        let layout = Layout {
            right_aligned: 1,
            capped: (2, 5),
        };
        write(&mut out, &["NAME", "N", "LONG"], &rows, layout).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "NAME     N  LONG\na        7  xxxx…\nbbb   1234  end\n"
        );
    }
}
