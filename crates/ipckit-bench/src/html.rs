//! The HTML report: one self-contained file (no network access) made from a bench run's JSON.
//!
//! The charts are inline SVG drawn here; the only script is the in-page self-check, which
//! runs on load and writes its verdict into `<pre id="self-check">` (`OK ...` or `FAIL: ...`).
//! Every chart is an `<svg data-chart=NAME>` with one mark (`rect` or `circle`) per data row,
//! each carrying `data-row` (the row's key) and `data-value` (the row's exact JSON numbers);
//! the table's cells carry their JSON numbers in `data-value` and the JSON path in
//! `data-field`, and the whole document is embedded in `<script id="ipckit-data">`, so the
//! check compares what is drawn with what was measured.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The newest results schema this reader understands.
pub const SCHEMA: u64 = 1;

/// Checks that `doc` is an ipckit bench document this reader understands.
///
/// # Errors
///
/// A message naming what is wrong: not an object, no `schema`, a schema newer than
/// [`SCHEMA`], or no `rows`/`machine`/`floor`.
pub fn check_schema(doc: &Value) -> Result<(), String> {
    let obj = doc
        .as_object()
        .ok_or("not an ipckit results file: the JSON is not an object")?;
    let schema = obj
        .get("schema")
        .and_then(Value::as_u64)
        .ok_or("not an ipckit results file: no \"schema\" number")?;
    if schema > SCHEMA {
        return Err(format!(
            "results schema {schema} is newer than this ipckit reads ({SCHEMA}); use a newer ipckit"
        ));
    }
    for k in ["machine", "floor"] {
        if !obj.get(k).is_some_and(Value::is_object) {
            return Err(format!("not an ipckit results file: no \"{k}\" object"));
        }
    }
    if !obj.get("rows").is_some_and(Value::is_array) {
        return Err("not an ipckit results file: no \"rows\" array".into());
    }
    Ok(())
}

/// The self-check, run by the browser on load.
const SELF_CHECK: &str = include_str!("html_check.js");

const STYLE: &str = "body{font:14px/1.4 sans-serif;margin:24px;color:#222}\
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}\
td{white-space:nowrap}td:last-child{white-space:normal}td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#eee}\
svg{display:block;margin:8px 0 24px;background:#fafafa;border:1px solid #ddd}\
svg text{font:11px sans-serif;fill:#333}.grid{stroke:#ddd}\
#self-check{padding:6px;background:#eef;border:1px solid #99c}";

const PALETTE: [&str; 16] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#a6761d",
];

/// The bench's mechanisms in its order (the recommender's candidates): each gets a colour of
/// its own.
const KNOWN: [&str; 13] = crate::recommend::CANDIDATES;

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn num(v: &Value, path: &str) -> Option<f64> {
    get(v, path).and_then(Value::as_f64)
}

fn text(v: &Value, path: &str) -> String {
    match get(v, path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(x) => x.to_string(),
    }
}

/// The exact JSON text of a number (what `data-value` carries).
fn raw(v: &Value, path: &str) -> Option<String> {
    get(v, path).filter(|x| x.is_number()).map(Value::to_string)
}

/// A row's key, unique in a run; the self-check builds the same key from the JSON.
pub fn row_key(r: &Value) -> String {
    let producers = match get(r, "producers").and_then(Value::as_u64) {
        Some(n) => format!(" x{n}"),
        None => String::new(),
    };
    format!(
        "{}{producers} {} {} {} {}",
        text(r, "mechanism"),
        text(r, "wait"),
        text(r, "placement"),
        text(r, "size"),
        text(r, "impl")
    )
}

/// Size as the text table shows it.
fn size_label(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{}MiB", n >> 20)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}KiB", n >> 10)
    } else {
        format!("{n}B")
    }
}

/// Renders the report of `doc` (a bench run's JSON) as one HTML document.
///
/// # Errors
///
/// The document is not one [`check_schema`] accepts.
pub fn render(doc: &Value) -> Result<String, String> {
    check_schema(doc)?;
    let rows: Vec<&Value> = doc["rows"]
        .as_array()
        .map_or(Vec::new(), |r| r.iter().collect());
    let mut h = String::new();
    let tool = text(doc, "tool");
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>ipckit bench report</title><style>{STYLE}</style></head><body>\n\
<h1>ipckit bench report</h1>\n<pre id=\"self-check\">self-check did not run</pre>\n"
    );
    machine_section(&mut h, doc, &tool);
    h.push_str("<h2>Throughput, MB/s per row (10^6 B/s)</h2>\n");
    bar_chart(&mut h, "throughput", &rows, "throughput_mbps", "MB/s");
    h.push_str(
        "<h2>Round trip, ns, log scale: p50 (dot), p99 (tick), p99.9 (end of the line)</h2>\n",
    );
    rtt_chart(&mut h, &rows);
    let sizes: std::collections::BTreeSet<u64> = rows
        .iter()
        .filter(|r| num(r, "throughput_mbps").is_some())
        .filter_map(|r| get(r, "size").and_then(Value::as_u64))
        .collect();
    if sizes.len() > 1 {
        h.push_str("<h2>MB/s against message size (log-log, one line per mechanism)</h2>\n");
        size_chart(&mut h, &rows);
    }
    h.push_str("<h2>CPU per message (user+sys of both processes, throughput phase), ns</h2>\n");
    bar_chart(&mut h, "cpu", &rows, "cpu_ns_per_msg", "ns/msg");
    let pairs = placement_rows(&rows);
    if !pairs.is_empty() {
        h.push_str("<h2>Same CPU against cross-CPU: RTT p50, ns</h2>\n");
        bar_chart(&mut h, "placement", &pairs, "rtt_ns.p50", "ns");
    }
    table_section(&mut h, &rows);
    seed_section(&mut h, doc);
    if let Some(notes) = doc.get("notes").and_then(Value::as_array) {
        if !notes.is_empty() {
            h.push_str("<h2>Notes</h2>\n<ul>\n");
            for n in notes {
                let _ = writeln!(h, "<li>{}</li>", esc(n.as_str().unwrap_or_default()));
            }
            h.push_str("</ul>\n");
        }
    }
    // `</` cannot appear inside the script element: `\/` is the same string in JSON.
    let json = serde_json::to_string(doc)
        .map_err(|e| format!("serializing the report: {e}"))?
        .replace("</", "<\\/")
        .replace("<!--", "<\\u0021--");
    let _ = write!(
        h,
        "<script type=\"application/json\" id=\"ipckit-data\">{json}</script>\n\
<script>{SELF_CHECK}</script>\n</body></html>\n"
    );
    Ok(h)
}

/// The seed's table (`seed_table`, [`crate::seed`]): absent from files older than it.
fn seed_section(h: &mut String, doc: &Value) {
    let Some(table) = doc.get("seed_table").and_then(Value::as_array) else {
        return;
    };
    if table.is_empty() {
        return;
    }
    h.push_str(
        "<h2>The seed's table, measured here</h2>\n<p>ipckit rows of this run, one line per \
family; 64 B round trip p50 and one way (half of it); the seed's figures as the seed gave \
them (its latency is not said to be one way or a round trip).</p>\n<table id=\"seed-table\">\
<thead><tr><th>family</th><th>best MB/s</th><th>64 B block RTT / one-way us</th>\
<th>64 B spin RTT / one-way us</th><th>CPU us/msg</th><th>seed MB/s</th><th>seed us</th>\
<th>for</th><th>from the rows</th></tr></thead><tbody>\n",
    );
    let f = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |x| format!("{x:.prec$}"));
    let rtt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2} / {:.2}", x / 2.0));
    for r in table {
        let rows: Vec<String> = [
            ("MB/s", "best_mbps_row"),
            ("block RTT and CPU", "rtt_64_block_row"),
            ("spin RTT", "rtt_64_spin_row"),
        ]
        .iter()
        .filter_map(|(what, k)| {
            r.get(*k)
                .and_then(Value::as_str)
                .map(|row| format!("{what} from {}", esc(row)))
        })
        .collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&text(r, "family")),
            f(num(r, "best_mbps"), 0),
            rtt(num(r, "rtt_64_block_us")),
            rtt(num(r, "rtt_64_spin_us")),
            f(num(r, "cpu_us_per_msg"), 2),
            f(num(r, "seed_mbps"), 0),
            esc(&text(r, "seed_latency_us")),
            esc(&text(r, "use_for")),
            rows.join(", ")
        );
    }
    h.push_str("</tbody></table>\n");
}

fn machine_section(h: &mut String, doc: &Value, tool: &str) {
    let m = &doc["machine"];
    let f = &doc["floor"];
    let _ = writeln!(
        h,
        "<h2>Machine and floor</h2>\n<ul>\n<li>{} ({} build) on {}, kernel {}</li>",
        esc(tool),
        esc(&text(m, "profile")),
        esc(&text(m, "cpu_model")),
        esc(&text(m, "kernel"))
    );
    let _ = writeln!(
        h,
        "<li>CPUs: {} online ({}), using {}; clock {}, a read {:.1} ns</li>",
        esc(&text(m, "cpu_count")),
        esc(&text(m, "cpus_online")),
        esc(&text(m, "cpus_used")),
        esc(&text(m, "clock_source")),
        num(m, "clock_read_ns").unwrap_or(f64::NAN)
    );
    match get(f, "cacheline_rtt_ns").filter(|v| v.is_object()) {
        Some(p) => {
            let _ = writeln!(
                h,
                "<li>floor: cache-line RTT p50 {:.0} ns, p99 {:.0} ns; memcpy {:.0} MB/s; syscall {:.0} ns</li>",
                num(p, "p50").unwrap_or(f64::NAN),
                num(p, "p99").unwrap_or(f64::NAN),
                num(f, "memcpy_mbps").unwrap_or(f64::NAN),
                num(f, "syscall_ns").unwrap_or(f64::NAN)
            );
        }
        None => {
            let _ = writeln!(
                h,
                "<li>floor: cache-line RTT n/a ({}); memcpy {:.0} MB/s; syscall {:.0} ns</li>",
                esc(&text(f, "cacheline_note")),
                num(f, "memcpy_mbps").unwrap_or(f64::NAN),
                num(f, "syscall_ns").unwrap_or(f64::NAN)
            );
        }
    }
    if let (Some(c), Some(s)) = (
        num(f, "blocking_rtt_cross_ns"),
        num(f, "blocking_rtt_same_ns"),
    ) {
        let _ = writeln!(
            h,
            "<li>wake-up: a blocking round trip (eventfd) takes {:.1} us across CPUs, {:.1} us on one CPU</li>",
            c / 1e3,
            s / 1e3
        );
    }
    let _ = writeln!(
        h,
        "<li>medians of {} run(s) per row; RTT = round trip; MB/s = 10^6 B/s</li>\n</ul>",
        esc(&text(doc, "options.repeat"))
    );
}

/// Precision that means: `12.3k`, `2.10M`, as the text table shows a rate.
const HUMAN: usize = usize::MAX;

/// The text table's columns: header, JSON path of the number, how to show it.
const COLUMNS: [(&str, &str, f64, usize); 8] = [
    ("MB/s", "throughput_mbps", 1.0, 1),
    ("msgs/s", "msgs_per_s", 1.0, HUMAN),
    ("RTT p50 us", "rtt_ns.p50", 1e-3, 2),
    ("RTT p99 us", "rtt_ns.p99", 1e-3, 2),
    ("CPU us/msg", "cpu_ns_per_msg", 1e-3, 2),
    ("xfloor", "ratio_to_floor", 1.0, 1),
    ("xraw", "ratio_to_raw_rtt", 1.0, 2),
    ("xraw tput", "ratio_to_raw_msgs", 1.0, 2),
];

fn table_section(h: &mut String, rows: &[&Value]) {
    h.push_str("<h2>Results</h2>\n<table id=\"results\"><thead><tr>");
    for c in ["mechanism", "wait", "place", "size", "impl"] {
        let _ = write!(h, "<th>{c}</th>");
    }
    for (name, ..) in COLUMNS {
        let _ = write!(h, "<th>{name}</th>");
    }
    h.push_str("<th></th></tr></thead>\n<tbody>\n");
    for r in rows {
        let key = row_key(r);
        let _ = write!(h, "<tr data-row=\"{}\">", esc(&key));
        let mech = match get(r, "producers").and_then(Value::as_u64) {
            Some(n) => format!("{} x{n}", text(r, "mechanism")),
            None => text(r, "mechanism"),
        };
        let size = get(r, "size").and_then(Value::as_u64).unwrap_or(0);
        for c in [
            mech,
            text(r, "wait"),
            text(r, "placement"),
            size_label(size),
            text(r, "impl"),
        ] {
            let _ = write!(h, "<td>{}</td>", esc(&c));
        }
        for (_, path, scale, prec) in COLUMNS {
            match (raw(r, path), num(r, path)) {
                (Some(rv), Some(v)) => {
                    let shown = if prec == HUMAN {
                        crate::report::human(v * scale)
                    } else {
                        format!("{:.prec$}", v * scale)
                    };
                    let _ = write!(
                        h,
                        "<td class=\"n\" data-field=\"{path}\" data-value=\"{rv}\">{shown}</td>"
                    );
                }
                _ => {
                    let _ = write!(h, "<td class=\"n\" data-field=\"{path}\">-</td>");
                }
            }
        }
        let mut flags = Vec::new();
        if let Some(e) = num(r, "errors").filter(|&e| e > 0.0) {
            flags.push(format!("ERRORS {e}"));
        }
        if get(r, "noisy").and_then(Value::as_bool) == Some(true) {
            flags.push("noisy".into());
        }
        let (lost, reordered) = (
            num(r, "lost").unwrap_or(0.0),
            num(r, "reordered").unwrap_or(0.0),
        );
        if let Some(pct) = num(r, "loss_pct") {
            flags.push(format!(
                "lost {lost} ({pct:.2}% of the flood) reordered {reordered}"
            ));
        } else if lost > 0.0 || reordered > 0.0 {
            flags.push(format!("lost {lost} reordered {reordered}"));
        }
        let note = text(r, "note");
        if !note.is_empty() {
            flags.push(note);
        }
        let _ = writeln!(h, "<td>{}</td></tr>", esc(&flags.join("; ")));
    }
    h.push_str("</tbody></table>\n");
}

/// Axis helper: maps a value to a pixel on a linear or log10 scale.
struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
    px0: f64,
    px1: f64,
}

impl Scale {
    fn new(lo: f64, hi: f64, log: bool, px0: f64, px1: f64) -> Scale {
        let (lo, hi) = if log {
            let lo = lo.max(1e-9).log10().floor();
            let hi = hi.max(1e-9).log10().ceil().max(lo + 1.0);
            (lo, hi)
        } else {
            (0.0, if hi > 0.0 { hi * 1.05 } else { 1.0 })
        };
        Scale {
            lo,
            hi,
            log,
            px0,
            px1,
        }
    }
    fn px(&self, v: f64) -> f64 {
        let t = if self.log { v.max(1e-9).log10() } else { v };
        self.px0 + (t - self.lo) / (self.hi - self.lo) * (self.px1 - self.px0)
    }
    /// Tick values.
    fn ticks(&self) -> Vec<f64> {
        if self.log {
            (self.lo as i32..=self.hi as i32)
                .map(|e| 10f64.powi(e))
                .collect()
        } else {
            let step = nice_step(self.hi / 5.0);
            (0..)
                .map(|i| f64::from(i) * step)
                .take_while(|&v| v <= self.hi)
                .collect()
        }
    }
}

fn nice_step(x: f64) -> f64 {
    let p = 10f64.powf(x.log10().floor());
    let m = x / p;
    p * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

fn tick_label(v: f64) -> String {
    if v >= 1e9 {
        format!("{}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

const LABEL_W: f64 = 300.0;
const PLOT_W: f64 = 560.0;
const ROW_H: f64 = 14.0;

/// Vertical grid and tick labels for a horizontal axis at the top.
fn x_axis(h: &mut String, s: &Scale, y0: f64, y1: f64) {
    for t in s.ticks() {
        let x = s.px(t);
        let _ = write!(
            h,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{y0}\" x2=\"{x:.1}\" y2=\"{y1}\"/>\
<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            y0 - 4.0,
            tick_label(t)
        );
    }
}

/// One horizontal bar per row that has a number at `path`.
fn bar_chart(h: &mut String, name: &str, rows: &[&Value], path: &str, unit: &str) {
    let data: Vec<(&Value, f64, String)> = rows
        .iter()
        .filter_map(|r| Some((*r, num(r, path)?, raw(r, path)?)))
        .collect();
    let max = data.iter().map(|d| d.1).fold(0.0, f64::max);
    let top = 24.0;
    let height = top + ROW_H * data.len() as f64 + 10.0;
    let s = Scale::new(0.0, max, false, LABEL_W, LABEL_W + PLOT_W);
    let _ = write!(
        h,
        "<svg data-chart=\"{name}\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\" xmlns=\"http://www.w3.org/2000/svg\">",
        w = LABEL_W + PLOT_W + 90.0
    );
    x_axis(h, &s, top, height - 10.0);
    for (i, (r, v, rv)) in data.iter().enumerate() {
        let y = top + ROW_H * i as f64;
        let key = esc(&row_key(r));
        let color = PALETTE[mech_index(r) % PALETTE.len()];
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{key}</text>\
<rect data-row=\"{key}\" data-value=\"{rv}\" x=\"{LABEL_W}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"{color}\"><title>{key}: {v:.2} {unit}</title></rect>\
<text x=\"{:.1}\" y=\"{}\">{}</text>",
            LABEL_W - 6.0,
            y + 10.0,
            y + 1.0,
            (s.px(*v) - LABEL_W).max(1.0),
            ROW_H - 2.0,
            s.px(*v).max(LABEL_W + 1.0) + 4.0,
            y + 10.0,
            short(*v)
        );
    }
    h.push_str("</svg>\n");
}

fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A stable colour per mechanism name: the known ones in order, others by a hash of the name.
fn mech_index(r: &Value) -> usize {
    let m = text(r, "mechanism");
    KNOWN.iter().position(|k| *k == m).unwrap_or_else(|| {
        m.bytes().fold(0usize, |a, b| {
            a.wrapping_mul(31).wrapping_add(usize::from(b))
        })
    })
}

/// RTT percentiles on a log scale: one `circle` (the p50) per row, a line from it to the
/// p99.9 with a tick at the p99.
fn rtt_chart(h: &mut String, rows: &[&Value]) {
    let data: Vec<(&Value, [f64; 3], String)> = rows
        .iter()
        .filter_map(|r| {
            let p = [
                num(r, "rtt_ns.p50")?,
                num(r, "rtt_ns.p99")?,
                num(r, "rtt_ns.p999")?,
            ];
            let rv = format!(
                "{} {} {}",
                raw(r, "rtt_ns.p50")?,
                raw(r, "rtt_ns.p99")?,
                raw(r, "rtt_ns.p999")?
            );
            Some((*r, p, rv))
        })
        .collect();
    let lo = data.iter().map(|d| d.1[0]).fold(f64::INFINITY, f64::min);
    let hi = data.iter().map(|d| d.1[2]).fold(1.0, f64::max);
    let lo = if lo.is_finite() { lo } else { 1.0 };
    let top = 24.0;
    let height = top + ROW_H * data.len() as f64 + 10.0;
    let s = Scale::new(lo, hi, true, LABEL_W, LABEL_W + PLOT_W);
    let _ = write!(
        h,
        "<svg data-chart=\"rtt\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\" xmlns=\"http://www.w3.org/2000/svg\">",
        w = LABEL_W + PLOT_W + 90.0
    );
    x_axis(h, &s, top, height - 10.0);
    for (i, (r, p, rv)) in data.iter().enumerate() {
        let y = top + ROW_H * i as f64 + ROW_H / 2.0;
        let key = esc(&row_key(r));
        let color = PALETTE[mech_index(r) % PALETTE.len()];
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{key}</text>\
<line x1=\"{:.1}\" y1=\"{y}\" x2=\"{:.1}\" y2=\"{y}\" stroke=\"{color}\" stroke-width=\"2\"/>\
<line x1=\"{:.1}\" y1=\"{}\" x2=\"{:.1}\" y2=\"{}\" stroke=\"{color}\"/>\
<line x1=\"{:.1}\" y1=\"{}\" x2=\"{:.1}\" y2=\"{}\" stroke=\"{color}\"/>\
<circle data-row=\"{key}\" data-value=\"{rv}\" cx=\"{:.1}\" cy=\"{y}\" r=\"4\" fill=\"{color}\"><title>{key}: p50 {:.0} ns, p99 {:.0} ns, p99.9 {:.0} ns</title></circle>",
            LABEL_W - 6.0,
            y + 4.0,
            s.px(p[0]),
            s.px(p[2]),
            s.px(p[1]),
            y - 4.0,
            s.px(p[1]),
            y + 4.0,
            s.px(p[2]),
            y - 4.0,
            s.px(p[2]),
            y + 4.0,
            s.px(p[0]),
            p[0],
            p[1],
            p[2]
        );
    }
    h.push_str("</svg>\n");
}

/// MB/s against size: one line per (mechanism, wait, placement, impl), one `circle` per row.
fn size_chart(h: &mut String, rows: &[&Value]) {
    let mut series: BTreeMap<String, Vec<(&Value, f64, f64, String)>> = BTreeMap::new();
    for r in rows {
        let (Some(size), Some(v), Some(rv)) = (
            num(r, "size"),
            num(r, "throughput_mbps"),
            raw(r, "throughput_mbps"),
        ) else {
            continue;
        };
        let producers = match get(r, "producers").and_then(Value::as_u64) {
            Some(n) => format!(" x{n}"),
            None => String::new(),
        };
        let name = format!(
            "{}{producers} {} {} {}",
            text(r, "mechanism"),
            text(r, "wait"),
            text(r, "placement"),
            text(r, "impl")
        );
        series.entry(name).or_default().push((*r, size, v, rv));
    }
    let all = series.values().flatten();
    let (smin, smax, vmin, vmax) = all.fold(
        (f64::INFINITY, 1.0f64, f64::INFINITY, 1.0f64),
        |(a, b, c, d), p| (a.min(p.1), b.max(p.1), c.min(p.2), d.max(p.2)),
    );
    let (w, ht) = (900.0, 520.0f64);
    let (left, top, plot_w, plot_h) = (60.0, 20.0, 560.0, 460.0);
    let sx = Scale::new(smin, smax, true, left, left + plot_w);
    let sy = Scale::new(vmin.max(1e-3), vmax, true, top + plot_h, top);
    let legend_h = 14.0 * series.len() as f64 + 30.0;
    let height = ht.max(legend_h);
    let _ = write!(
        h,
        "<svg data-chart=\"size\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for t in sx.ticks() {
        let x = sx.px(t);
        let _ = write!(
            h,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{}\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}B</text>",
            top + plot_h,
            top + plot_h + 14.0,
            tick_label(t)
        );
    }
    for t in sy.ticks() {
        let y = sy.px(t);
        let _ = write!(
            h,
            "<line class=\"grid\" x1=\"{left}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left + plot_w,
            left - 4.0,
            y + 4.0,
            tick_label(t)
        );
    }
    for (i, (name, pts)) in series.iter_mut().enumerate() {
        pts.sort_by(|a, b| a.1.total_cmp(&b.1));
        let color = PALETTE[i % PALETTE.len()];
        let dash = if (i / PALETTE.len()) % 2 == 1 {
            " stroke-dasharray=\"4 2\""
        } else {
            ""
        };
        let line: Vec<String> = pts
            .iter()
            .map(|p| format!("{:.1},{:.1}", sx.px(p.1), sy.px(p.2)))
            .collect();
        let _ = write!(
            h,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\"{dash}/>",
            line.join(" ")
        );
        for p in pts.iter() {
            let key = esc(&row_key(p.0));
            let _ = write!(
                h,
                "<circle data-row=\"{key}\" data-value=\"{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{key}: {:.1} MB/s</title></circle>",
                p.3,
                sx.px(p.1),
                sy.px(p.2),
                p.2
            );
        }
        let ly = top + 14.0 * i as f64;
        let lx = left + plot_w + 20.0;
        let _ = write!(
            h,
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/><text x=\"{}\" y=\"{}\">{}</text>",
            lx + 16.0,
            lx + 20.0,
            ly + 4.0,
            esc(name)
        );
    }
    h.push_str("</svg>\n");
}

/// Rows measured both on one CPU and across two (same everything else), in pairs.
fn placement_rows<'a>(rows: &[&'a Value]) -> Vec<&'a Value> {
    let other = |r: &Value| {
        let mut k = row_key(r);
        let p = text(r, "placement");
        let swapped = if p == "same" { "cross" } else { "same" };
        k = k.replacen(&format!(" {p} "), &format!(" {swapped} "), 1);
        k
    };
    let keys: std::collections::HashSet<String> = rows
        .iter()
        .filter(|r| num(r, "rtt_ns.p50").is_some())
        .map(|r| row_key(r))
        .collect();
    let mut out: Vec<&Value> = rows
        .iter()
        .copied()
        .filter(|r| num(r, "rtt_ns.p50").is_some() && keys.contains(&other(r)))
        .collect();
    // Each pair together: cross then same.
    out.sort_by_key(|r| (other(r).min(row_key(r)), text(r, "placement")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_checks() {
        assert!(check_schema(&serde_json::json!([1])).is_err());
        assert!(check_schema(&serde_json::json!({"rows": []})).is_err());
        let e =
            check_schema(&serde_json::json!({"schema": 2, "machine": {}, "floor": {}, "rows": []}))
                .unwrap_err();
        assert!(e.contains("newer"), "{e}");
        assert!(check_schema(
            &serde_json::json!({"schema": 1, "machine": {}, "floor": {}, "rows": []})
        )
        .is_ok());
    }

    #[test]
    fn escapes_and_keys() {
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
        let r = serde_json::json!({"mechanism": "shm-mpsc", "producers": 2, "wait": "spin",
            "placement": "cross", "size": 64, "impl": "ipckit"});
        assert_eq!(row_key(&r), "shm-mpsc x2 spin cross 64 ipckit");
        assert_eq!(size_label(65536), "64KiB");
        assert_eq!(size_label(1500), "1500B");
    }

    #[test]
    fn the_seed_table_shows_the_rows_figures_and_the_seeds() {
        let doc = serde_json::json!({"schema": 1, "machine": {}, "floor": {}, "rows": [],
            "seed_table": [{"family": "pipe", "mechanisms": ["pipe"], "best_mbps": 2345.6,
                "best_mbps_row": "pipe block 64KiB", "rtt_64_block_us": 45.5,
                "rtt_64_block_row": "pipe block 64B", "rtt_64_spin_us": null,
                "rtt_64_spin_row": null, "cpu_us_per_msg": 1.234, "use_for": "a <child>",
                "seed_mbps": 1900.0, "seed_latency_us": 520.0}]});
        let h = render(&doc).unwrap();
        let at = h.find("id=\"seed-table\"").expect("the seed's table");
        let t = &h[at..h[at..].find("</table>").unwrap() + at];
        for want in [
            "2346",
            "45.50 / 22.75",
            "1.23",
            "1900",
            "520",
            "a &lt;child&gt;",
            "pipe block 64B",
        ] {
            assert!(t.contains(want), "{want} missing from {t}");
        }
        // An older file has no seed table, and no section.
        let old = serde_json::json!({"schema": 1, "machine": {}, "floor": {}, "rows": []});
        assert!(!render(&old).unwrap().contains("seed-table"));
    }
}
