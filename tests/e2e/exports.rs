//! Real-looking exports of the same people from two departments: resident identity numbers with
//! a lowercase check letter, full-width digits, spaces (ASCII, no-break, ideographic) around
//! them, a byte-order mark, CRLF line ends and a Chinese header, several rows per person, empty
//! value cells, ragged rows and numbers whose check digit is wrong. PSI cardinality, intersection
//! and join-aggregate through two real nodes must give what a plain computation of the same
//! files, done here, gives.

use std::collections::{BTreeMap, BTreeSet};

use crate::jobs::{budget_of, job_id, set_budget};
use crate::support::{Fed, fails, ok};

/// ISO 7064 MOD 11-2 check character of 17 digits, written here independently of the node.
fn check_char(body: &str) -> char {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let s: u32 = body
        .bytes()
        .zip(W)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    b"10X98765432"[(s % 11) as usize] as char
}

/// Person `i`'s 18-character number.
fn id_of(i: u32) -> String {
    let body = format!(
        "{}{}{:02}{:02}{:03}",
        [110105, 310104, 440305][(i % 3) as usize],
        1950 + i % 50,
        1 + i % 12,
        1 + i % 28,
        i % 1000
    );
    let c = check_char(&body);
    format!("{body}{c}")
}

/// The number as a messy export writes it: variant `v` of lowercase check letter, full-width
/// digits, surrounding spaces.
fn messy(id: &str, v: u32) -> String {
    let full_width = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                '0'..='9' => char::from_u32(0xFF10 + (c as u32 - '0' as u32)).unwrap(),
                'X' => '\u{FF58}',
                c => c,
            })
            .collect()
    };
    match v % 6 {
        0 => id.to_owned(),
        1 => id.to_lowercase(),
        2 => full_width(id),
        3 => format!("  {id}\u{a0}"),
        4 => format!("\u{3000}{}", id.to_lowercase()),
        _ => format!(" {} ", full_width(&id[..9]) + &id[9..]),
    }
}

/// What both files hold, and what a plain computation of them gives.
struct Exports {
    health: String,
    civil: String,
    /// Normalized numbers in each file's good rows.
    health_ids: BTreeSet<String>,
    civil_ids: BTreeSet<String>,
    /// Good rows, and bad rows by reason (wrong field count, bad key).
    health_rows: u64,
    health_ragged: u64,
    health_bad_keys: u64,
    civil_rows: u64,
    civil_bad_keys: u64,
    /// Health's people per district: (people, their total cost clamped to [0, HI]).
    by_district: BTreeMap<&'static str, (i64, i64)>,
    /// The raw text of the first good row of each matched person in health's file.
    first_text: BTreeMap<String, String>,
}

const HI: i64 = 500;
const DISTRICTS: [&str; 2] = ["北区", "南区"];

fn write_exports(fed: &Fed) -> Exports {
    // Health: people 0..1200, one to three rows each (visits), costs in cents; some cells
    // empty, some people with only empty cells. Civil: people 400..2000, one or two rows.
    let mut health = String::from("\u{feff}身份证号,区县,费用\r\n");
    let mut health_ids = BTreeSet::new();
    let mut first_text = BTreeMap::new();
    let mut totals: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    let (mut health_rows, mut health_ragged, mut health_bad_keys) = (0, 0, 0);
    for i in 0..1200u32 {
        let id = id_of(i);
        let district = (i % 2) as usize;
        for visit in 0..(1 + i % 3) {
            let text = messy(&id, i + visit);
            let cost = if i % 10 == 7 || (visit == 1 && i % 4 == 0) {
                String::new()
            } else {
                // Some people go above HI in total, to be clamped.
                ((i * 37 + visit * 11) % 300).to_string()
            };
            health.push_str(&format!("{text},{},{cost}\r\n", DISTRICTS[district]));
            health_rows += 1;
            health_ids.insert(id.clone());
            first_text.entry(id.clone()).or_insert(text);
            let e = totals.entry(id.clone()).or_insert((district, 0));
            e.1 += cost.parse::<i64>().unwrap_or(0);
        }
        if i % 150 == 3 {
            // A ragged row and a number with a wrong check digit.
            health.push_str(&format!("{},{}\r\n", id, DISTRICTS[district]));
            health_ragged += 1;
            let wrong = format!("{}{}", &id[..17], if id.ends_with('0') { '1' } else { '0' });
            health.push_str(&format!("{wrong},{},5\r\n", DISTRICTS[district]));
            health_bad_keys += 1;
        }
    }
    let mut civil = String::from("\u{feff}证件号码,姓名\r\n");
    let mut civil_ids = BTreeSet::new();
    let (mut civil_rows, mut civil_bad_keys) = (0, 0);
    for i in 400..2000u32 {
        let id = id_of(i);
        for copy in 0..(1 + i % 2) {
            civil.push_str(&format!("{},张{}\r\n", messy(&id, i * 7 + copy), i % 97));
            civil_rows += 1;
        }
        civil_ids.insert(id.clone());
        if i % 200 == 11 {
            civil.push_str(&format!("{}9,李四\r\n", &id[..16]));
            civil_bad_keys += 1;
        }
    }
    let mut by_district = BTreeMap::new();
    for (id, (district, total)) in &totals {
        if civil_ids.contains(id) {
            let e = by_district.entry(DISTRICTS[*district]).or_insert((0, 0));
            e.0 += 1;
            e.1 += (*total).clamp(0, HI);
        }
    }
    std::fs::write(fed.root.join("health.csv"), &health).unwrap();
    std::fs::write(fed.root.join("civil.csv"), &civil).unwrap();
    Exports {
        health: fed.path("health.csv"),
        civil: fed.path("civil.csv"),
        health_ids,
        civil_ids,
        health_rows,
        health_ragged,
        health_bad_keys,
        civil_rows,
        civil_bad_keys,
        by_district,
        first_text,
    }
}

fn add(fed: &Fed, node: &str, args: &[&str]) -> String {
    let manager = fed.path(&format!("{node}/manager.toml"));
    let mut all = vec!["dataset", "add", "--profile", &manager];
    all.extend_from_slice(args);
    ok(&all)
}

/// The input figures a result states for `node`.
fn input<'a>(result: &'a serde_json::Value, node: &str) -> &'a serde_json::Value {
    result["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["node"] == node)
        .unwrap_or_else(|| panic!("no inputs for {node} in {result}"))
}

/// The noised `label` of `result`, which must lie within four 95% half-widths of `exact`
/// (discrete Laplace: beyond that with probability below 10^-5).
fn near(result: &serde_json::Value, label: &str, exact: i64) {
    let v = result["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["label"] == label)
        .unwrap_or_else(|| panic!("no {label} in {result}"));
    let value = v["value"].as_f64().unwrap();
    let half = (v["upper"].as_f64().unwrap() - v["lower"].as_f64().unwrap()) / 2.0;
    assert!(
        (value - exact as f64).abs() <= 4.0 * half,
        "{label}: {value} ± {half}, exact {exact}"
    );
}

#[test]
fn messy_exports_of_the_same_people_match_as_a_plain_normalized_computation_does() {
    let fed = Fed::init("health,civil");
    let _health = fed.start("health");
    let _civil = fed.start("civil");
    let x = write_exports(&fed);

    // A strict registration refuses the file at its first bad row, naming it, never the key.
    let columns = [
        "--column",
        "身份证号:text:internal",
        "--column",
        "区县:text:public",
        "--column",
        "费用:integer:sensitive:nullable",
    ];
    let mut strict = vec![
        "--id",
        "visits",
        "--file",
        &x.health,
        "--key-columns",
        "身份证号:cn-resident-id",
    ];
    strict.extend_from_slice(&columns);
    let manager = fed.path("health/manager.toml");
    let mut args = vec!["dataset", "add", "--profile", &manager];
    args.extend_from_slice(&strict);
    let err = fails(&args);
    assert!(err.contains("health.csv, line "), "{err}");
    assert!(err.contains("--on-bad-row skip"), "{err}");

    strict.extend_from_slice(&["--on-bad-row", "skip"]);
    let out = add(&fed, "health", &strict);
    assert!(
        out.contains(&format!(
            "{} rows  keys: 身份证号:cn-resident-id",
            x.health_rows
        )),
        "{out}"
    );
    let left_out = x.health_ragged + x.health_bad_keys;
    assert!(
        out.contains(&format!(
            "{left_out} rows left out ({} wrong field count, {} bad key)",
            x.health_ragged, x.health_bad_keys
        )),
        "{out}"
    );
    let report = std::fs::read_to_string(fed.root.join("health/data/rejects/visits.csv")).unwrap();
    assert_eq!(report.lines().count() as u64, 1 + left_out, "{report}");
    assert!(
        !report.contains(&id_of(3)[..17]),
        "the report holds no key: {report}"
    );

    add(
        &fed,
        "civil",
        &[
            "--id",
            "residents",
            "--file",
            &x.civil,
            "--key-columns",
            "证件号码:cn-resident-id",
            "--on-bad-row",
            "skip",
            "--column",
            "证件号码:text:internal",
            "--column",
            "姓名:text:restricted",
        ],
    );
    // The same file as plain text keys: its key types differ from health's.
    add(
        &fed,
        "civil",
        &[
            "--id",
            "residents-text",
            "--file",
            &x.civil,
            "--key-columns",
            "证件号码",
            "--column",
            "证件号码:text:internal",
            "--column",
            "姓名:text:restricted",
        ],
    );
    set_budget(&fed, "health", "visits", 100);
    set_budget(&fed, "civil", "residents", 100);
    set_budget(&fed, "civil", "residents-text", 100);
    let listed = ok(&[
        "dataset",
        "list",
        "--profile",
        &fed.path("civil/manager.toml"),
    ]);
    assert!(listed.contains("keys: 证件号码:cn-resident-id"), "{listed}");

    let operator = fed.path("health/operator.toml");
    let researcher = fed.path("health/researcher.toml");
    let result = |id: &str, extra: &[&str]| -> String {
        let mut args = vec!["job", "result", "--profile", &researcher, id];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let run = |args: &[&str]| -> String {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[
            "--profile",
            &operator,
            "--recipient",
            "researcher.health.concord",
        ]);
        let out = crate::support::concord(&all);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{all:?}: {stderr}");
        job_id(&stderr)
    };
    let common: BTreeSet<&String> = x.health_ids.intersection(&x.civil_ids).collect();

    // Key types must agree: refused at civil before any message.
    let mut all = vec![
        "run",
        "psi",
        "--profile",
        &operator,
        "--kind",
        "cardinality",
        "--left",
        "health:visits:身份证号",
        "--right",
        "civil:residents-text:证件号码",
        "--epsilon",
        "1",
    ];
    let err = fails(&all);
    assert!(err.contains("refused (key-types)"), "{err}");
    assert!(err.contains("证件号码:text"), "{err}");
    // Refused after civil's policy check, which had reserved: the reservation is back (on
    // `residents`, whose budget the same file under its second id spends).
    let id = job_id(&err);
    assert_eq!(
        budget_of(&fed, "civil", &id),
        [("residents".into(), "returned".into())]
    );
    all.clear();

    // Cardinality: the noised count of people in both.
    let id = run(&[
        "psi",
        "--kind",
        "cardinality",
        "--left",
        "health:visits:身份证号",
        "--right",
        "civil:residents:证件号码",
        "--epsilon",
        "1",
    ]);
    let card: serde_json::Value = serde_json::from_str(&result(&id, &["--json"])).unwrap();
    near(&card, "cardinality", common.len() as i64);
    let health_in = input(&card, "health");
    assert_eq!(health_in["rows_used"], x.health_rows, "{card}");
    assert_eq!(health_in["rows_left_out"], left_out);
    assert_eq!(health_in["distinct_keys"], x.health_ids.len());
    let civil_in = input(&card, "civil");
    assert_eq!(civil_in["rows_used"], x.civil_rows, "{card}");
    assert_eq!(civil_in["rows_left_out"], x.civil_bad_keys);
    assert_eq!(civil_in["distinct_keys"], x.civil_ids.len());

    // Intersection: every row of a matched person, its normalized key and its text as written.
    let id = run(&[
        "psi",
        "--kind",
        "intersection",
        "--left",
        "health:visits:身份证号",
        "--right",
        "civil:residents:证件号码",
    ]);
    let csv = result(&id, &["--csv", "--original-keys"]);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("身份证号,身份证号 (as in file)"));
    let mut matched = BTreeSet::new();
    let mut first_seen = BTreeMap::new();
    for line in lines {
        let (key, text) = line.split_once(',').unwrap();
        matched.insert(key.to_owned());
        first_seen
            .entry(key.to_owned())
            .or_insert_with(|| text.to_owned());
    }
    assert_eq!(matched, common.iter().map(|s| (*s).clone()).collect());
    for (key, text) in &first_seen {
        let written = &x.first_text[key];
        // Fields with spaces around them come back as written (CSV keeps them unquoted).
        assert_eq!(text, written, "{key}");
    }
    let plain = result(&id, &["--csv"]);
    assert_eq!(plain.lines().next(), Some("身份证号"));

    // Join: per district, the matched people (those with only empty cost cells included) and
    // their costs, each person's total clamped to [0, HI].
    let id = run(&[
        "join",
        "--values",
        &format!("health:visits:身份证号:费用:0:{HI}"),
        "--keys",
        "civil:residents:证件号码",
        "--group-by",
        "区县",
        "--categories",
        "北区,南区",
        "--epsilon",
        "8",
    ]);
    let join: serde_json::Value = serde_json::from_str(&result(&id, &["--json"])).unwrap();
    for (district, (people, sum)) in &x.by_district {
        near(&join, &format!("count ({district})"), *people);
        near(&join, &format!("sum ({district})"), *sum);
    }
    assert!(
        join["nulls"].as_str().unwrap().starts_with("include"),
        "{join}"
    );
    let health_in = input(&join, "health");
    assert_eq!(health_in["rows_used"], x.health_rows);
    assert_eq!(health_in["distinct_keys"], x.health_ids.len());
    assert!(health_in["null_values"].as_u64().unwrap() > 0);
    let clamped = &health_in["clamped"];
    assert_eq!(clamped["of"], x.health_ids.len(), "{join}");
    assert_eq!(clamped["bounds"], format!("[0, {HI}] per person"));

    // A DP count of health's visits counts people, not rows, and says how it was protected.
    let count_id = run(&[
        "query",
        "--dataset",
        "health:visits",
        "--statistic",
        "count",
        "--epsilon",
        "1",
    ]);
    let count: serde_json::Value = serde_json::from_str(&result(&count_id, &["--json"])).unwrap();
    near(&count, "count", x.health_ids.len() as i64);
    assert!(x.health_rows > x.health_ids.len() as u64 + 500);
    assert!(
        count["privacy_unit"]
            .as_str()
            .unwrap()
            .starts_with("person (a distinct key: 身份证号"),
        "{count}"
    );
    let noise = &count["noise"][0];
    assert_eq!(noise["sensitivity"], 1.0, "{count}");
    assert_eq!(
        noise["contribution"],
        "one row per person: a count of people"
    );
    assert_eq!(noise["epsilon"], "1");
    assert!(noise["scale"].as_f64().unwrap() >= 1.0, "{count}");

    // The table aligns Chinese labels by display width.
    let text = result(&id, &[]);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("count (") || l.starts_with("sum ("))
        .collect();
    let value_column = |l: &str| {
        let before: String = l.chars().take_while(|c| *c != '.').collect();
        unicode_width::UnicodeWidthStr::width(before.as_str())
    };
    assert_eq!(rows.len(), 4, "{text}");
    assert!(
        rows.iter()
            .all(|l| value_column(l) == value_column(rows[0])),
        "{text}"
    );
}
