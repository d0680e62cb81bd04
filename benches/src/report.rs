//! RESULTS.md: a header naming the machine, the load and the run counts, then one section per
//! group (how it was measured, the table, what it means) with its plots beside it.

use std::path::Path;

/// One group's results.
pub struct Section {
    pub title: String,
    /// How it was measured, then the table(s), in markdown.
    pub body: String,
    /// What it means, stating where wasce is behind.
    pub meaning: String,
    /// (file name, SVG) of each plot, written to `plots/`.
    pub plots: Vec<(String, String)>,
    /// Headline figures for the summary at the top: (what, value).
    pub headlines: Vec<(String, String)>,
}

/// A markdown table from a header and rows.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len()));
    for r in rows {
        s += &format!("| {} |\n", r.join(" | "));
    }
    s
}

/// Write `RESULTS{suffix}.md` and `plots/*{suffix}.svg` into `dir` (`suffix`: "" for a quiet
/// run, "-load" for one under `--load`, so that the two sit side by side).
pub fn write(dir: &Path, suffix: &str, header: &str, sections: &[Section]) -> std::io::Result<()> {
    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots)?;
    let mut md = String::from(header);
    md += "\n## Headlines\n\n";
    md += &table(&["figure", "value"], &sections.iter().flat_map(|s| s.headlines.iter().map(|(a, b)| vec![a.clone(), b.clone()])).collect::<Vec<_>>());
    for s in sections {
        md += &format!("\n## {}\n\n{}\n", s.title, s.body.trim_end());
        for (name, svg) in &s.plots {
            let name = match name.strip_suffix(".svg") {
                Some(stem) => format!("{stem}{suffix}.svg"),
                None => name.clone(),
            };
            std::fs::write(plots.join(&name), svg)?;
            md += &format!("\n![{name}](plots/{name})\n");
        }
        md += &format!("\n**What this means.** {}\n", s.meaning.trim());
    }
    std::fs::write(dir.join(format!("RESULTS{suffix}.md")), md)
}
