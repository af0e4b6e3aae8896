//! The HTML report in a real browser: `ipckit report` and `ipckit bench --html` write a page
//! that headless Chromium (the Debian package, installed by `.ci/ensure-chromium`) renders;
//! the page's own self-check (every chart has a size and one mark per data row with the row's
//! numbers, the table's numbers equal the embedded JSON's, no script error) is read back
//! through `--dump-dom`. And bad results files: exit 2 with a clear message.

#[path = "../util/mod.rs"]
mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use util::{output_within, TestEnv};

/// How long one Chromium run may take before it counts as hung.
const BROWSER_LIMIT: Duration = Duration::from_secs(120);

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/report")
        .join(name)
}

/// The browser on PATH (or `IPCKIT_CHROMIUM`).
fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("IPCKIT_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The browser. When it is missing, the project's own script installs it (Debian's package,
/// non-interactively, once per test run), so the README's test command needs nothing else.
/// If that cannot be done (no root, no network), the test fails under `.ci/test`
/// (`IPCKIT_CI_TMP` set) and is skipped loudly elsewhere.
fn chromium() -> Option<PathBuf> {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    if let Some(p) = find_chromium() {
        return Some(p);
    }
    INSTALL.call_once(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/ensure-chromium");
        eprintln!("chromium not found: running {}", script.display());
        let st = std::process::Command::new("bash")
            .arg(&script)
            .stdin(std::process::Stdio::null())
            .status();
        eprintln!("{} exited: {st:?}", script.display());
    });
    if let Some(p) = find_chromium() {
        return Some(p);
    }
    assert!(
        std::env::var_os("IPCKIT_CI_TMP").is_none(),
        "chromium not found under CI, and .ci/ensure-chromium could not install it"
    );
    eprintln!(
        "SKIPPED: chromium not found and .ci/ensure-chromium could not install it (needs root or \
         passwordless sudo); set IPCKIT_CHROMIUM to run the browser test"
    );
    None
}

/// Renders `html` in headless Chromium and returns the self-check's verdict.
fn self_check(env: &TestEnv, browser: &Path, html: &str) -> String {
    let profile = env.path("chromium-profile");
    let mut c = Command::new(browser);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--window-size=1400,2400",
    ])
    .arg(format!("--user-data-dir={profile}"))
    .arg("--dump-dom")
    .arg(format!("file://{html}"));
    let out = output_within(&mut c, BROWSER_LIMIT, "chromium --dump-dom");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let start = dom
        .find("<pre id=\"self-check\">")
        .unwrap_or_else(|| panic!("no self-check in the DOM:\n{dom}"));
    let rest = &dom[start + "<pre id=\"self-check\">".len()..];
    rest[..rest.find("</pre>").unwrap()].to_string()
}

fn report(env: &TestEnv, results: &Path, html: &str) {
    env.run(&["report", results.to_str().unwrap(), "--html", html], b"")
        .ok();
}

#[test]
fn saved_run_passes_its_self_check_in_chromium() {
    let Some(browser) = chromium() else { return };
    let env = TestEnv::new("report-saved");
    let html = env.path("report.html");
    report(&env, &repo_file("results/default-2cpu-vm.json"), &html);
    let verdict = self_check(&env, &browser, &html);
    assert!(verdict.starts_with("OK "), "{verdict}");
    // 79 rows; throughput, RTT, CPU and, with three sizes, MB/s against size.
    assert!(verdict.contains("79 rows"), "{verdict}");
    assert!(
        verdict.contains("4 charts (throughput, rtt, cpu, size)"),
        "{verdict}"
    );
}

#[test]
fn both_placements_get_the_placement_chart() {
    let Some(browser) = chromium() else { return };
    let env = TestEnv::new("report-both");
    let html = env.path("report.html");
    report(&env, &fixture("both-placements.json"), &html);
    let verdict = self_check(&env, &browser, &html);
    assert!(verdict.starts_with("OK "), "{verdict}");
    assert!(verdict.contains("placement"), "{verdict}");
}

/// The check is not vacuous: a table number that differs from the JSON, and a mark removed
/// from a chart, are both caught.
#[test]
fn self_check_catches_a_wrong_number_and_a_missing_mark() {
    let Some(browser) = chromium() else { return };
    let env = TestEnv::new("report-tamper");
    let html = env.path("report.html");
    report(&env, &fixture("both-placements.json"), &html);
    let page = std::fs::read_to_string(&html).unwrap();

    let cell = "data-field=\"throughput_mbps\" data-value=\"";
    let at = page.find(cell).unwrap() + cell.len();
    let mut wrong = page.clone();
    wrong.insert(at, '9');
    let bad = env.path("wrong-number.html");
    std::fs::write(&bad, wrong).unwrap();
    let verdict = self_check(&env, &browser, &bad);
    assert!(
        verdict.starts_with("FAIL: ") && verdict.contains("table cell throughput_mbps"),
        "{verdict}"
    );

    let chart = page.find("<svg data-chart=\"cpu\"").unwrap();
    let mark_start = chart + page[chart..].find("<rect data-row=").unwrap();
    let mark_end = mark_start + page[mark_start..].find("</rect>").unwrap() + "</rect>".len();
    let mut missing = page.clone();
    missing.replace_range(mark_start..mark_end, "");
    let bad = env.path("missing-mark.html");
    std::fs::write(&bad, missing).unwrap();
    let verdict = self_check(&env, &browser, &bad);
    assert!(
        verdict.starts_with("FAIL: ") && verdict.contains("chart cpu: no mark for"),
        "{verdict}"
    );

    let mut thrown = page.clone();
    let script = thrown.rfind("<script>").unwrap() + "<script>".len();
    thrown.insert_str(script, "setTimeout(function(){ undefinedFunction(); }, 0);");
    let bad = env.path("script-error.html");
    std::fs::write(&bad, thrown).unwrap();
    let verdict = self_check(&env, &browser, &bad);
    assert!(
        verdict.starts_with("FAIL: ") && verdict.contains("script error"),
        "{verdict}"
    );
}

#[test]
fn fresh_bench_run_writes_the_html_report() {
    let Some(browser) = chromium() else { return };
    let env = TestEnv::new("report-fresh");
    let html = env.path("fresh.html");
    env.run(
        &[
            "bench", "--quick", "--mech", "pipe", "--size", "64,4K", "--wait", "block", "--html",
            &html,
        ],
        b"",
    )
    .ok();
    let verdict = self_check(&env, &browser, &html);
    assert!(verdict.starts_with("OK 2 rows"), "{verdict}");
    // `--format html` without a file is a user error.
    env.run(
        &["bench", "--quick", "--mech", "pipe", "--format", "html"],
        b"",
    )
    .user_error("--output");
}

#[test]
fn bad_results_files_exit_2() {
    let env = TestEnv::new("report-bad");
    let html = env.path("never.html");
    let cases = [
        ("garbage.json", "this is not JSON", "not JSON"),
        ("other.json", "{\"hello\": 1}", "not an ipckit results file"),
        (
            "newer.json",
            "{\"schema\": 2, \"tool\": \"ipckit 9.0.0\", \"machine\": {}, \"floor\": {}, \"rows\": []}",
            "schema 2, newer",
        ),
    ];
    for (name, body, needle) in cases {
        let p = env.path(name);
        std::fs::write(&p, body).unwrap();
        env.run(&["report", &p, "--html", &html], b"")
            .user_error(needle);
        std::fs::remove_file(&p).unwrap();
    }
    env.run(&["report", &env.path("absent.json"), "--html", &html], b"")
        .user_error("absent.json");
    assert!(!Path::new(&html).exists(), "no report for bad input");
    env.assert_clean();
}
