//! A private local AWS per test: our moto server (with extensions, or plain when
//! `LOCALAWS_PLAIN=1`) on a free loopback port, seeded with the standard fleet, and SDK clients
//! pointed at it with retries off so failures are immediate. Dropping it stops the server; the
//! server also exits on its own if the test process dies.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_ec2::config::{Credentials, Region};
use rollout_core::Clients;
use serde_json::Value;

pub struct LocalAws {
    server: Child,
    pub endpoint: String,
    /// What the seed made: AMIs, groups, clusters, alarms (see infra/local/localaws/seed.py).
    pub fleet: Value,
    pub clients: Clients,
}

fn local_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/local")
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("LOCALAWS_PYTHON") {
        return p.into();
    }
    let venv = local_dir().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "the local AWS is not installed: run `make local-venv` (make test does it)"
    );
    venv
}

impl LocalAws {
    pub async fn start() -> Self {
        let plain = std::env::var("LOCALAWS_PLAIN").is_ok_and(|v| v == "1");
        let mut command = Command::new(python());
        command
            .current_dir(local_dir())
            .args(["-m", "localaws", "serve", "--port", "0", "--parent-pid"])
            .arg(std::process::id().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if plain {
            command.arg("--plain");
        }
        let mut server = command.spawn().expect("start the local AWS");
        let mut first = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut first)
            .expect("read the local AWS port");
        let port = first
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("local AWS did not start: {first:?}"))
            .trim()
            .to_string();
        let endpoint = format!("http://127.0.0.1:{port}");
        let seeded = Command::new(python())
            .current_dir(local_dir())
            .args(["-m", "localaws", "seed", "--endpoint", &endpoint])
            .output()
            .expect("run the seed");
        assert!(
            seeded.status.success(),
            "seed failed: {}",
            String::from_utf8_lossy(&seeded.stderr)
        );
        let fleet: Value = serde_json::from_slice(&seeded.stdout).expect("seed manifest");
        let conf = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "local"))
            .retry_config(RetryConfig::disabled())
            .load()
            .await;
        LocalAws {
            server,
            endpoint,
            fleet,
            clients: Clients::from_conf(&conf),
        }
    }

    pub fn ami(&self, name: &str) -> String {
        self.fleet["amis"][name].as_str().unwrap().to_string()
    }

    /// A control endpoint call (infra/local/localaws/control.py).
    pub fn control(&self, method: &str, action: &str, body: Value) -> Value {
        let url = format!("{}/_localaws/{action}", self.endpoint);
        let response = match method {
            "GET" => ureq::get(&url).call(),
            "DELETE" => ureq::delete(&url).call(),
            _ => ureq::post(&url).send_json(&body),
        };
        response
            .unwrap_or_else(|e| panic!("control {method} {action}: {e}"))
            .body_mut()
            .read_json()
            .expect("control answer")
    }

    pub fn fleet_view(&self) -> Value {
        self.control("GET", "fleet", Value::Null)
    }

    /// The AMIs of a group's instances, as the control endpoint sees them, sorted.
    pub fn group_amis(&self, group: &str) -> Vec<String> {
        let view = self.fleet_view();
        let mut amis: Vec<String> = view["groups"][group]["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["imageId"].as_str().unwrap().to_string())
            .collect();
        amis.sort();
        amis
    }
}

impl Drop for LocalAws {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
