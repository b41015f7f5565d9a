//! The benchmarks run in their short mode: every row runs, against real servers, and what it
//! transferred was checked. Their timings are never asserted.

use std::process::Command;

/// `gbs-bench --short`: the stock/gbs table, the ceilings, the plugin rows (in process and
/// out of process), each row with positive numbers, and the JSON line that ends the output.
#[test]
fn gbs_bench_short_runs_every_row() {
    let output = Command::new(env!("CARGO_BIN_EXE_gbs-bench"))
        .arg("--short")
        .output()
        .expect("run gbs-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "gbs-bench --short failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("last line {line:?}: {e}"));
    assert_eq!(result["short"], true);
    for (section, rows) in [
        ("versus_stock", 13),
        ("ceilings", 3),
        ("plugins", 3),
        ("out_of_process_plugin", 3),
        ("gateway", 3),
    ] {
        let got = result[section]
            .as_array()
            .unwrap_or_else(|| panic!("no {section} in {line}"));
        assert_eq!(got.len(), rows, "{section}: {line}");
        for row in got {
            for key in ["baseline", "gbs", "ratio"] {
                let value = row[key].as_f64().unwrap_or(0.0);
                assert!(value.is_finite() && value > 0.0, "{section} {row}");
            }
            // The table shows each row too.
            let name = row["name"].as_str().expect("a row name");
            assert!(stdout.contains(name), "{name} is not in the table");
        }
    }
}

/// An unknown argument is refused with a message, not ignored (input tried: `--long`).
#[test]
fn gbs_bench_refuses_an_unknown_argument() {
    let output = Command::new(env!("CARGO_BIN_EXE_gbs-bench"))
        .arg("--long")
        .output()
        .expect("run gbs-bench");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--long"));
}

/// `--only plugins` runs that section alone (with its out-of-process rows); inputs tried:
/// `--only plugins --short`, and `--only` with a section that does not exist and with none
/// at all.
#[test]
fn gbs_bench_only_runs_the_section_asked_for() {
    let output = Command::new(env!("CARGO_BIN_EXE_gbs-bench"))
        .args(["--only", "plugins", "--short"])
        .output()
        .expect("run gbs-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let line = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("last line {line:?}: {e}"));
    assert_eq!(result["short"], true);
    for section in ["plugins", "out_of_process_plugin"] {
        assert!(
            result[section]
                .as_array()
                .is_some_and(|rows| rows.len() == 3),
            "{section}: {line}"
        );
    }
    for absent in ["versus_stock", "ceilings", "gateway"] {
        assert!(result.get(absent).is_none(), "{absent} ran: {line}");
    }
    for args in [&["--only", "disk"][..], &["--only"][..]] {
        let output = Command::new(env!("CARGO_BIN_EXE_gbs-bench"))
            .args(args)
            .output()
            .expect("run gbs-bench");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("versus_stock|plugins|gateway"),
            "{args:?}: {stderr}"
        );
    }
}

/// `gbs-zkap-bench --short`: every row, the spent-pass stores' against SQLite and a real
/// PostgreSQL server, each a positive rate, in the JSON line that ends the output.
#[test]
fn gbs_zkap_bench_short_runs_every_row() {
    let output = Command::new(env!("CARGO_BIN_EXE_gbs-zkap-bench"))
        .arg("--short")
        .output()
        .expect("run gbs-zkap-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "gbs-zkap-bench --short failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("last line {line:?}: {e}"));
    assert_eq!(result["short"], true);
    for key in [
        "passes_per_second",
        "upload_us_without_plugin",
        "upload_us_with_zkap",
    ] {
        assert!(result[key].as_f64().unwrap_or(0.0) > 0.0, "{key}: {line}");
    }
    for backend in ["sqlite", "postgresql"] {
        for load in [
            "one_pass_serial",
            "one_pass_8_at_once",
            "hundred_passes_8_at_once",
        ] {
            let rate = result["store_passes_per_second"][backend][load]
                .as_f64()
                .unwrap_or(0.0);
            assert!(rate > 0.0, "{backend} {load}: {line}");
        }
    }
}
