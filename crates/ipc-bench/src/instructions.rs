//! The suite's instruction-count mode: each server under callgrind, a fixed number of messages
//! from the lean load generator, and the same server started and stopped with no load (its
//! start-up and shutdown) subtracted: user-space instructions per message. Unlike seconds,
//! these do not move with the machine's noise, so the ratios can be compared across machines
//! and commits.

use std::path::Path;

use crate::load::{self, LoadConfig, Stop};
use crate::suite::{SCENARIOS, ServerKind, SuiteConfig, SuiteError, start_server};

/// The scenarios counted, with their message counts (connections, for `churn`: one message
/// each), and the servers compared in each; the first is ours, the second the reference.
const COUNTED: &[(&str, u64, &[ServerKind])] = &[
    ("lat1", 20_000, PLAIN),
    ("tput64", 100_000, PLAIN),
    ("pipe", 200_000, PLAIN),
    ("churn", 5_000, PLAIN),
    ("v-lat1", 20_000, VARLINK),
    ("v-pipe", 200_000, VARLINK),
    ("v-churn", 5_000, VARLINK),
];

/// The tokio floor shows what the runtime and a task per connection cost by themselves.
const PLAIN: &[ServerKind] = &[
    ServerKind::Ours,
    ServerKind::RefC,
    ServerKind::RefCNaive,
    ServerKind::RefTokioFloor,
];
const VARLINK: &[ServerKind] = &[ServerKind::Ours, ServerKind::RefZlink];

/// One server's count in one scenario.
#[derive(Debug, Clone)]
pub struct Count {
    /// Scenario name.
    pub scenario: &'static str,
    /// Which server.
    pub server: ServerKind,
    /// Messages sent (and checked).
    pub msgs: u64,
    /// Instructions with the load, start-up and shutdown included.
    pub loaded: u64,
    /// Instructions of start-up and shutdown alone.
    pub idle: u64,
    /// Whether every reply was right.
    pub clean: bool,
}

impl Count {
    /// User-space instructions per message.
    pub fn per_msg(&self) -> f64 {
        self.loaded.saturating_sub(self.idle) as f64 / self.msgs.max(1) as f64
    }
}

/// Counts every scenario (those of `config.only` if any) for every server. In quick mode the
/// message counts are a twentieth, to prove the mode works.
///
/// # Errors
///
/// [`SuiteError`] if a server does not start or stop, or the load generator fails.
pub fn run(config: &SuiteConfig) -> Result<Vec<Count>, SuiteError> {
    let wanted = |name: &str| config.only.is_empty() || config.only.iter().any(|o| o == name);
    let mut counts = Vec::new();
    for &(name, msgs, servers) in COUNTED.iter().filter(|(name, ..)| wanted(name)) {
        let scenario = SCENARIOS
            .iter()
            .find(|s| s.name == name)
            .expect("a counted scenario is a scenario");
        let msgs = if config.quick { msgs / 20 } else { msgs };
        for &server in servers {
            eprintln!("{name}: {} under callgrind", server.name());
            let out = config
                .work_dir
                .join(format!("callgrind-{name}-{}", server.name()));
            let start = || {
                start_server(
                    config,
                    server,
                    scenario.protocol,
                    scenario.framing,
                    name,
                    Some(&out),
                )
            };
            // Start-up and shutdown alone, then with the load.
            start()?.stop()?;
            let idle = total(&out)?;
            let running = start()?;
            let report = load::run(&LoadConfig {
                protocol: scenario.protocol,
                socket: running.socket.clone(),
                framing: scenario.framing,
                conns: scenario.conns,
                pipeline: scenario.pipeline,
                size: scenario.size,
                stop: Stop::Msgs(msgs),
                oneshot: scenario.oneshot,
                tcp: None,
                verify: true,
                lean: true,
            })?;
            running.stop()?;
            counts.push(Count {
                scenario: name,
                server,
                msgs: report.msgs,
                loaded: total(&out)?,
                idle,
                clean: report.is_clean() && report.msgs == msgs,
            });
        }
    }
    Ok(counts)
}

/// The total instructions callgrind wrote to `out`.
fn total(out: &Path) -> Result<u64, SuiteError> {
    let text = std::fs::read_to_string(out)
        .map_err(|e| SuiteError::Server(format!("no callgrind output {}: {e}", out.display())))?;
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals: ")
                .or_else(|| l.strip_prefix("summary: "))
        })
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| SuiteError::Server(format!("no total in {}", out.display())))?;
    let _ = std::fs::remove_file(out);
    Ok(total)
}

/// The counts as a Markdown table, with each server's ratio to the scenario's reference (the
/// second server of its list: the coalescing C server, or zlink).
pub fn table(counts: &[Count]) -> String {
    let mut text = String::from(
        "| scenario | server | messages | instructions per message | / reference | checked |\n\
         | --- | --- | ---: | ---: | ---: | --- |\n",
    );
    for count in counts {
        let reference = COUNTED
            .iter()
            .find(|(name, ..)| *name == count.scenario)
            .map(|(_, _, servers)| servers[1]);
        let ratio = counts
            .iter()
            .find(|c| c.scenario == count.scenario && Some(c.server) == reference)
            .map_or_else(
                || "-".to_owned(),
                |r| format!("{:.2}", count.per_msg() / r.per_msg()),
            );
        text.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} | {} |\n",
            count.scenario,
            count.server.name(),
            count.msgs,
            count.per_msg(),
            ratio,
            if count.clean { "ok" } else { "NOT CLEAN" },
        ));
    }
    text
}

/// The counts as JSON.
pub fn json(counts: &[Count]) -> serde_json::Value {
    counts
        .iter()
        .map(|c| {
            serde_json::json!({
                "scenario": c.scenario,
                "server": c.server.name(),
                "msgs": c.msgs,
                "instructions_loaded": c.loaded,
                "instructions_idle": c.idle,
                "instructions_per_msg": c.per_msg(),
                "clean": c.clean,
            })
        })
        .collect()
}
