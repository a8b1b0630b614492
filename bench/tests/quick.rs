//! The smoke run of the comparison (`bench/compare --quick`): real etcd and
//! real keel members, every workload with tiny totals, the memory and restart
//! figures with 2,000 keys, the section spliced into a document and the chart
//! drawn. It checks that every figure is there and positive, not what they
//! are: speed is measured by the full run, never asserted by a test.

use std::path::{Path, PathBuf};
use std::process::Command;

fn require(tool: &str, package: &str, present: bool) -> bool {
    if !present {
        if std::env::var("KEEL_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!(
                "{tool} is required (KEEL_REQUIRE_TOOLS=1) but missing: apt-get install {package}"
            );
        }
        eprintln!(
            "SKIP: {tool} not found; install it with `apt-get install {package}` to run this test"
        );
    }
    present
}

fn on_path(tool: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|p| p.join(tool))
        .find(|p| p.is_file())
}

/// target/release/keel, built if this test was built alone.
fn keel_bin() -> PathBuf {
    let keel = Path::new(env!("CARGO_BIN_EXE_keel-compare")).with_file_name("keel");
    if !keel.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "--release", "--bin", "keel"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .expect("run cargo build");
        assert!(st.success(), "cargo build --bin keel failed");
    }
    keel
}

/// The numbers in a markdown table row (cells that parse as numbers).
fn numbers(row: &str) -> Vec<f64> {
    row.split('|')
        .filter_map(|c| c.trim().parse::<f64>().ok())
        .collect()
}

#[test]
fn quick_comparison_writes_every_figure_the_document_and_the_chart() {
    if !require("etcd", "etcd-server", on_path("etcd").is_some()) {
        return;
    }
    let font = Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf");
    if !require("DejaVuSans.ttf", "fonts-dejavu-core", font.is_file()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("benchmarks.md");
    let chart = dir.path().join("compare.png");
    let data = dir.path().join("data");
    std::fs::write(
        &doc,
        "# figures\n\nkept above\n<!-- compare:begin -->\nold figures\n<!-- compare:end -->\nkept below\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keel-compare"))
        .arg("--quick")
        .arg("--keel")
        .arg(keel_bin())
        .arg("--data")
        .arg(&data)
        .arg("--doc")
        .arg(&doc)
        .arg("--chart")
        .arg(&chart)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "keel-compare --quick failed:\n{stderr}"
    );

    let text = std::fs::read_to_string(&doc).unwrap();
    assert!(
        text.starts_with("# figures\n\nkept above\n<!-- compare:begin -->\n"),
        "{text}"
    );
    assert!(
        text.ends_with("<!-- compare:end -->\nkept below\n"),
        "{text}"
    );
    assert!(!text.contains("old figures"), "{text}");
    for name in [
        "put 1/1",
        "put 10/100",
        "put 100/1000",
        "range l 1/1",
        "range l 10/100",
        "range s 1/1",
        "range s 10/100",
        "txn-put 10/100",
        "watch 100×100",
        "lease keep-alive 10/100",
    ] {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("| 1 | {name} |")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{text}"));
        // members, etcd /s, keel /s, ratio, etcd p99, keel p99.
        let n = numbers(row);
        assert!(n.len() >= 6, "{row}");
        assert!(
            n[1..6].iter().all(|x| *x > 0.0),
            "a figure is not positive: {row}"
        );
        assert!(
            (n[3] - n[2] / n[1]).abs() < 0.01 + n[3] * 0.01,
            "ratio: {row}"
        );
    }
    for server in ["etcd", "keel"] {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("| {server} | ")))
            .unwrap_or_else(|| panic!("no memory row for {server}:\n{text}"));
        let n = numbers(row);
        assert!(n.len() == 6 && n.iter().all(|x| *x > 0.0), "{row}");
    }
    assert!(text.contains("fdatasync of 4 KiB p50"), "{text}");
    assert!(text.contains("Sequential puts on 1 member: keel"), "{text}");
    assert!(text.contains("Resident memory keel / etcd:"), "{text}");

    let png = std::fs::read(&chart).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 5_000, "a chart of {} bytes", png.len());
    assert!(!data.exists(), "the servers' data was left behind");
}
