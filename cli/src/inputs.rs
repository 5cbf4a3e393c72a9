//! What a result says about each party's input (rows used and left out, distinct keys, null
//! values, clamping), as a table, as JSON, and as warnings; and table cells padded by display
//! width, so that columns of Chinese text line up.

use std::io::Write;

use concord_node::proto as pb;
use unicode_width::UnicodeWidthStr as _;

/// More than this fraction of contributions clamped draws a warning.
pub(crate) const CLAMP_WARNING: f64 = 0.01;

/// `text` padded with spaces to `width` terminal columns (wide characters count two).
pub(crate) fn pad(text: &str, width: usize) -> String {
    let w = text.width();
    format!("{text}{}", " ".repeat(width.saturating_sub(w)))
}

/// `text` right-aligned in `width` terminal columns.
pub(crate) fn pad_left(text: &str, width: usize) -> String {
    let w = text.width();
    format!("{}{text}", " ".repeat(width.saturating_sub(w)))
}

/// The display width of `text`.
pub(crate) fn width(text: &str) -> usize {
    text.width()
}

fn rejected(i: &pb::PartyInput) -> u64 {
    i.rejects.as_ref().map_or(0, |r| {
        r.ragged + r.not_utf8 + r.null + r.bad_value + r.bad_key
    })
}

/// The inputs as JSON.
pub(crate) fn json(inputs: &[pb::PartyInput]) -> serde_json::Value {
    inputs
        .iter()
        .map(|i| {
            let (_, why) = rejects_text(i.rejects.as_ref());
            serde_json::json!({
                "node": i.node,
                "dataset": i.dataset,
                "rows_used": i.rows,
                "rows_left_out": rejected(i),
                "rows_left_out_why": why,
                "rows_without_key": i.rows_without_key,
                "distinct_keys": i.distinct_keys,
                "null_values": i.null_values,
                "clamped": i.clamped.as_ref().map(|c| serde_json::json!({
                    "value": c.value, "lower": c.lower, "upper": c.upper,
                    "of": i.clamp_total, "bounds": i.clamp_bounds, "epsilon": i.clamped_epsilon,
                })),
            })
        })
        .collect()
}

/// The inputs as a table, one row per party.
pub(crate) fn table(out: &mut impl Write, inputs: &[pb::PartyInput]) -> std::io::Result<()> {
    if inputs.is_empty() {
        return Ok(());
    }
    let head = [
        "node",
        "dataset",
        "rows used",
        "left out",
        "no key",
        "distinct keys",
        "null values",
        "clamped (noised)",
    ];
    let rows: Vec<[String; 8]> = inputs
        .iter()
        .map(|i| {
            let clamped = i.clamped.as_ref().map_or("-".to_owned(), |c| {
                format!(
                    "{:.0} of {} (95%: {:.0} to {:.0})",
                    c.value,
                    i.clamp_total,
                    c.lower.unwrap_or(c.value).max(0.0),
                    c.upper.unwrap_or(c.value)
                )
            });
            [
                i.node.clone(),
                i.dataset.clone(),
                i.rows.to_string(),
                rejected(i).to_string(),
                i.rows_without_key.to_string(),
                i.distinct_keys.to_string(),
                i.null_values.to_string(),
                clamped,
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..head.len())
        .map(|c| {
            rows.iter()
                .map(|r| width(&r[c]))
                .chain([width(head[c])])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let cells: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(c, t)| {
                if (2..7).contains(&c) {
                    pad_left(t, widths[c])
                } else {
                    pad(t, widths[c])
                }
            })
            .collect();
        format!("  {}", cells.join("  ").trim_end())
    };
    writeln!(out, "inputs:")?;
    writeln!(
        out,
        "{}",
        line(head.iter().map(|h| (*h).to_owned()).collect())
    )?;
    for r in rows {
        writeln!(out, "{}", line(r.to_vec()))?;
    }
    Ok(())
}

/// Warnings a careful reader should see: many contributions clamped (the bounds cut off a real
/// part of the data, so a sum is biased low or high), bad rows left out.
pub(crate) fn warnings(inputs: &[pb::PartyInput]) -> Vec<String> {
    let mut out = Vec::new();
    for i in inputs {
        if let Some(c) = &i.clamped
            && i.clamp_total > 0
        {
            let fraction = c.value / i.clamp_total as f64;
            if fraction > CLAMP_WARNING {
                out.push(format!(
                    "about {:.1}% of the {} contributions at {} ({}) were clamped to the bounds \
                     {} (a noised figure, 95% interval {:.0} to {:.0}): the result is biased; \
                     consider wider bounds",
                    100.0 * fraction,
                    i.clamp_total,
                    i.node,
                    i.dataset,
                    i.clamp_bounds,
                    c.lower.unwrap_or(c.value).max(0.0),
                    c.upper.unwrap_or(c.value),
                ));
            }
        }
        let left_out = rejected(i);
        if left_out > 0 {
            let (_, why) = rejects_text(i.rejects.as_ref());
            out.push(format!(
                "{left_out} bad rows of {} at {} were left out ({why}); its data manager has the \
                 reject report",
                i.dataset, i.node
            ));
        }
    }
    out
}

/// Rows left out by the bad-row policy, by reason, e.g. "3 (2 bad key, 1 wrong field count)".
pub(crate) fn rejects_text(r: Option<&pb::RejectCounts>) -> (u64, String) {
    let Some(r) = r else {
        return (0, String::new());
    };
    let parts: Vec<String> = [
        (r.ragged, "wrong field count"),
        (r.not_utf8, "not UTF-8"),
        (r.null, "null not allowed"),
        (r.bad_value, "value not of its type"),
        (r.bad_key, "bad key"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, why)| format!("{n} {why}"))
    .collect();
    let total = r.ragged + r.not_utf8 + r.null + r.bad_value + r.bad_key;
    (total, parts.join(", "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wide_characters_take_two_columns() {
        assert_eq!(pad("北京", 6), "北京  ");
        assert_eq!(pad("ab", 6), "ab    ");
        assert_eq!(pad_left("上海", 5), " 上海");
        assert_eq!(width("count (北京)"), 12);
    }

    #[test]
    fn clamping_over_one_percent_and_left_out_rows_warn() {
        let mut i = pb::PartyInput {
            node: "health".into(),
            dataset: "claims".into(),
            clamp_total: 1000,
            clamp_bounds: "[0, 5000] per person".into(),
            clamped: Some(pb::ResultValue {
                label: "clamped".into(),
                value: 10.0,
                lower: Some(-20.0),
                upper: Some(40.0),
            }),
            ..pb::PartyInput::default()
        };
        assert!(
            warnings(std::slice::from_ref(&i)).is_empty(),
            "1.0% is not over 1%"
        );
        i.clamped.as_mut().unwrap().value = 25.0;
        i.rejects = Some(pb::RejectCounts {
            bad_key: 3,
            ..pb::RejectCounts::default()
        });
        let w = warnings(&[i]);
        assert_eq!(w.len(), 2);
        assert!(
            w[0].starts_with("about 2.5% of the 1000 contributions at health"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("[0, 5000] per person"), "{}", w[0]);
        assert!(w[1].starts_with("3 bad rows of claims at health were left out (3 bad key)"));
    }
}
