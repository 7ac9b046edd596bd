//! `plus status`, `plus list --json` and `plus usage` show what jobs used,
//! through the real `plus` binary on the local backend (real workers).

use std::process::Output;

use serde_json::Value;

const PLUS: &str = env!("CARGO_BIN_EXE_plus");

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn plus(&self, args: &[&str]) -> Output {
        std::process::Command::new(PLUS)
            .args(args)
            .env_remove("DYNAMO_TABLE")
            .env("PLUS_HOME", self.dir.path().join("home"))
            .env("PLUS_USER", "alice")
            .env("PLUS_HEARTBEAT_SECONDS", "0.2")
            .env("PLUS_FLUSH_MILLIS", "50")
            .env("PLUS_WORK_DIR", self.dir.path().join("work"))
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.plus(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    fn script(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("a number: {v}"))
}

#[test]
fn status_list_and_usage_show_what_jobs_used() {
    let home = Home::new();
    let script = home.script("work.sh", "#!/bin/sh\nsleep 0.5\necho done\n");
    home.ok(&["run", "--cpu", "1024", "--memory", "2048", &script]);
    home.ok(&["run", &script]);

    // `plus list --json` carries each job's usage.
    let list = home.json(&["list", "--json"]);
    let jobs = list["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{list}");
    let sized = jobs
        .iter()
        .find(|j| j["resources"]["cpu"] == 1024)
        .expect("the sized job");
    let small = jobs
        .iter()
        .find(|j| j["resources"].is_null())
        .expect("the default job");
    let u = &sized["usage"];
    assert!(f(&u["vcpu_seconds"]) >= 0.5, "{u}");
    assert!(
        (f(&u["gib_seconds"]) - 2.0 * f(&u["vcpu_seconds"])).abs() < 0.0015,
        "{u}"
    );
    assert!(u["cost_usd"].is_null(), "nothing billed locally: {u}");
    assert_eq!(sized["attempts"][0]["usage"], *u);
    let s = &small["usage"];
    assert!(f(&s["vcpu_seconds"]) >= 0.125, "a quarter vCPU: {s}");

    // `plus status` prints a usage line.
    let id = sized["object_id"].as_str().unwrap();
    let status = home.ok(&["status", id]);
    let line = status
        .lines()
        .find(|l| l.starts_with("usage "))
        .unwrap_or_else(|| panic!("a usage line: {status}"));
    let vcpu = format!("{:.1} vCPU-s", f(&u["vcpu_seconds"]));
    assert!(
        line.contains(&vcpu) && line.ends_with("GiB-s, $0"),
        "{line}"
    );

    // `plus usage` sums them.
    let total = home.json(&["usage", "--since", "7d", "--json"]);
    assert_eq!(total["jobs"], 2, "{total}");
    assert_eq!(total["jobs_with_usage"], 2, "{total}");
    let want = f(&u["vcpu_seconds"]) + f(&s["vcpu_seconds"]);
    assert!(
        (f(&total["usage"]["vcpu_seconds"]) - want).abs() < 1e-9,
        "{total}"
    );
    assert_eq!(total["usage"]["cost_usd"], 0.0);
    let text = home.ok(&["usage"]);
    assert!(
        text.contains("jobs        2 (2 with usage recorded)") && text.contains("vCPU-s"),
        "{text}"
    );

    // A period that is too short leaves them out; a bad one is named.
    let none = home.json(&["usage", "--since", "0m", "--json"]);
    assert_eq!(none["jobs"], 0, "{none}");
    let bad = home.plus(&["usage", "--since", "a week"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--since \"a week\" is not a period"), "{err}");
}
