//! The table `gbs-bench` prints, and its JSON line.

use serde_json::json;

/// Which way a number is good.
#[derive(Clone, Copy)]
pub(crate) enum Better {
    Higher,
    Lower,
}

/// One comparison: a baseline (stock Tahoe, the machine's ceiling, or `gbs` without
/// plugins) and what `gbs` did.
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) unit: &'static str,
    pub(crate) better: Better,
    pub(crate) baseline: f64,
    pub(crate) gbs: f64,
}

impl Row {
    pub(crate) fn new(
        name: impl Into<String>,
        (unit, better): (&'static str, Better),
        baseline: f64,
        gbs: f64,
    ) -> Self {
        Self {
            name: name.into(),
            unit,
            better,
            baseline,
            gbs,
        }
    }

    /// How many times better `gbs` is than the baseline (below 1: worse).
    pub(crate) fn ratio(&self) -> f64 {
        let (better, worse) = match self.better {
            Better::Higher => (self.gbs, self.baseline),
            Better::Lower => (self.baseline, self.gbs),
        };
        better / worse.max(f64::MIN_POSITIVE)
    }
}

/// A titled group of rows and how its ratio reads.
pub(crate) struct Section {
    pub(crate) key: &'static str,
    pub(crate) title: &'static str,
    pub(crate) baseline: &'static str,
    pub(crate) ratio: &'static str,
    pub(crate) rows: Vec<Row>,
}

fn number(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.4}")
    }
}

pub(crate) fn print_table(sections: &[Section]) {
    for section in sections {
        println!("\n{}", section.title);
        println!(
            "{:<52} {:>14} {:>14} {:>8}  {}",
            "", section.baseline, "gbs", "unit", section.ratio
        );
        for row in &section.rows {
            println!(
                "{:<52} {:>14} {:>14} {:>8}  {:.2}x",
                row.name,
                number(row.baseline),
                number(row.gbs),
                row.unit,
                row.ratio()
            );
        }
    }
}

/// One JSON object on one line: every section's rows with their values and ratios.
pub(crate) fn json_line(sections: &[Section], short: bool) -> String {
    let mut object = serde_json::Map::new();
    object.insert("short".into(), json!(short));
    for section in sections {
        let rows: Vec<_> = section
            .rows
            .iter()
            .map(|row| {
                json!({
                    "name": row.name,
                    "unit": row.unit,
                    "baseline": row.baseline,
                    "gbs": row.gbs,
                    "ratio": row.ratio(),
                })
            })
            .collect();
        object.insert(section.key.into(), json!(rows));
    }
    serde_json::Value::Object(object).to_string()
}
