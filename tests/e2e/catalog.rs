//! Two nodes from `federation init`: datasets registered through the CLI, a peer's directory,
//! refusals of foreign certificates, unknown people and missing roles, all audited.

use crate::support::{Fed, audit_entries, fails, find, ok};

const PEOPLE_CSV: &str = "nin,district,claims,diagnosis\n\
    110101199001011234,north,12.50,J45\n\
    110101198502023456,south,,E11\n\
    \"110101197003034567\",\"east, upper\",7,I10\n";

pub(crate) fn add_people(fed: &Fed, profile: &str, file: &str) -> std::process::Output {
    crate::support::concord(&[
        "dataset",
        "add",
        "--profile",
        &fed.path(profile),
        "--id",
        "insured",
        "--file",
        file,
        "--key-columns",
        "nin",
        "--column",
        "nin:text:internal",
        "--column",
        "district:text:public",
        "--column",
        "claims:decimal:sensitive:nullable",
        "--column",
        "diagnosis:text:restricted",
        "--domain",
        "health",
    ])
}

#[test]
fn two_nodes_register_list_and_refuse_strangers() {
    let fed = Fed::init("health,civil");
    let health = fed.start("health");
    let civil = fed.start("civil");
    let csv = fed.root.join("insured.csv");
    std::fs::write(&csv, PEOPLE_CSV).unwrap();
    let csv = csv.to_str().unwrap();

    // A data manager registers a dataset at their node.
    let out = add_people(&fed, "civil/manager.toml", csv);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("civil/insured  3 rows  keys: nin"), "{text}");

    // An operator at civil lacks the data-manager role.
    let out = add_people(&fed, "civil/operator.toml", csv);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dataset.add needs the role data-manager (you hold operator)"),
        "{err}"
    );

    // Health's operator lists civil's directory through health: metadata only, no restricted
    // column, no path or digest.
    let listing = ok(&[
        "dataset",
        "list",
        "--profile",
        &fed.path("health/operator.toml"),
        "--peer",
        "civil",
        "--json",
    ]);
    let dir: serde_json::Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(dir["node"], "civil");
    let d = &dir["datasets"][0];
    assert_eq!(d["id"], "insured");
    assert_eq!(d["rows"], 3);
    assert_eq!(d["domain"], "health");
    let names: Vec<_> = d["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nin", "district", "claims"]);
    assert_eq!(d["withheld_columns"], 1);
    assert!(d["path"].is_null() && d["sha256"].is_null() && d["registered_by"].is_null());
    assert!(!listing.contains("diagnosis"));

    // Civil's own auditor sees everything.
    let own = ok(&[
        "dataset",
        "list",
        "--profile",
        &fed.path("civil/auditor.toml"),
        "--json",
    ]);
    let own: serde_json::Value = serde_json::from_str(&own).unwrap();
    assert_eq!(own["datasets"][0]["columns"][3]["name"], "diagnosis");
    assert_eq!(own["datasets"][0]["columns"][3]["tier"], "restricted");
    assert_eq!(own["datasets"][0]["registered_by"], "manager.civil.concord");

    // A certificate from another CA never completes the handshake. The stranger trusts the real
    // CA (so the client accepts the node) but presents a certificate from its own federation.
    let other = Fed::init("health,civil");
    let stranger = profile(&fed, "stranger", "health", &other.path("health/manager"));
    let err = fails(&["node", "health", "--profile", &stranger]);
    assert!(err.contains("error: "), "{err}");

    // A person of the federation whom civil does not list (health's manager) is refused.
    let visitor = profile(&fed, "visitor", "civil", &fed.path("health/manager"));
    let err = fails(&["dataset", "list", "--profile", &visitor]);
    assert!(
        err.contains("this node does not know your certificate's identity (Unauthenticated)"),
        "{err}"
    );

    // The health node's certificate presented as a person to civil's operator service: a peer
    // may not use people's calls.
    let as_peer = profile(&fed, "as_peer", "civil", &fed.path("health/node"));
    let err = fails(&["node", "health", "--profile", &as_peer]);
    assert!(
        err.contains("is for this node's people, not for peer nodes"),
        "{err}"
    );

    health.stop();
    civil.stop();

    // Every request is in the audit logs, accepted or refused, and the logs verify.
    let h = audit_entries(&fed, "health");
    find(
        &h,
        "dataset.list",
        "accepted",
        &[
            ("actor", "operator.health.concord"),
            ("subjects", "peer:civil"),
        ],
    );
    let tls = find(
        &h,
        "tls.handshake",
        "refused",
        &[("actor", "tcp 127.0.0.1:")],
    );
    let detail = tls["detail"].as_str().unwrap();
    assert!(detail.contains("certificate"), "{detail}");
    find(
        &h,
        "node.stop",
        "accepted",
        &[("detail", "graceful shutdown")],
    );

    let c = audit_entries(&fed, "civil");
    find(
        &c,
        "dataset.add",
        "accepted",
        &[
            ("actor", "manager.civil.concord"),
            ("subjects", "insured"),
            ("detail", "3 rows"),
        ],
    );
    find(
        &c,
        "dataset.add",
        "refused",
        &[
            ("actor", "operator.civil.concord"),
            ("detail", "needs the role data-manager"),
        ],
    );
    find(
        &c,
        "federation.directory",
        "accepted",
        &[("actor", "node.health.concord")],
    );
    find(
        &c,
        "dataset.list",
        "refused",
        &[("actor", "unknown certificate sha256:")],
    );
    find(
        &c,
        "node.health",
        "refused",
        &[
            ("actor", "node.health.concord"),
            ("detail", "not for peer nodes"),
        ],
    );
    for node in ["health", "civil"] {
        let out = ok(&[
            "audit",
            "verify",
            "--db",
            &fed.path(&format!("{node}/data/node.sqlite")),
            "--public-key",
            &fed.path(&format!("{node}/audit.pub")),
        ]);
        assert!(out.starts_with("audit log intact: "), "{out}");
    }
}

/// Writes a profile `name.toml` that reaches `node` of `fed`, trusting `fed`'s CA, with the
/// certificate and key at `holder` (a path without `.pem` / `.key`). Returns its path.
fn profile(fed: &Fed, name: &str, node: &str, holder: &str) -> String {
    let path = fed.root.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "node_address = \"{}\"\nnode_identity = \"node.{node}.concord\"\n\
             ca_cert = \"{}\"\ncert = \"{holder}.pem\"\nkey = {{ file = \"{holder}.key\" }}\n",
            node_address(fed, node),
            fed.path("ca.pem"),
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn node_address(fed: &Fed, node: &str) -> String {
    let config = std::fs::read_to_string(fed.root.join(node).join("node.toml")).unwrap();
    let line = config.lines().find(|l| l.starts_with("listen = ")).unwrap();
    line.trim_start_matches("listen = ")
        .trim_matches('"')
        .to_owned()
}

#[test]
fn malformed_files_are_refused_with_file_and_line() {
    let fed = Fed::init("health,civil");
    let node = fed.start("health");
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "bad_utf8.csv",
            b"nin,district,claims,diagnosis\nA1,north,1,x\nA2,s\xffuth,2,y\n",
            "bad_utf8.csv, line 3, column district: not valid UTF-8",
        ),
        (
            "ragged.csv",
            b"nin,district,claims,diagnosis\nA1,north,1,x\nA2,south,2\n",
            "ragged.csv, line 3: 3 fields, expected 4",
        ),
        (
            "bad_number.csv",
            b"nin,district,claims,diagnosis\nA1,north,1,x\nA2,south,1.2.3,y\n",
            "bad_number.csv, line 3, column claims: \"1.2.3\" is not a valid decimal",
        ),
        (
            "bad_header.csv",
            b"nin,area,claims,diagnosis\nA1,north,1,x\n",
            "bad_header.csv, line 1: header is",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = fed.root.join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = add_people(&fed, "health/manager.toml", path.to_str().unwrap());
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{name}: {err}");
    }
    node.stop();
    let entries = audit_entries(&fed, "health");
    find(
        &entries,
        "dataset.add",
        "refused",
        &[("detail", "ragged.csv, line 3")],
    );
}
