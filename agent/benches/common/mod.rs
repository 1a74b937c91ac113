//! How every bench reports a figure, so `make bench` (scripts/bench.sh) can
//! gather them into one table: each figure is printed twice, once as a line
//! for people and once as `BENCH {json}` for the runner. A figure that could
//! not be measured is reported too, with the reason.
//!
//! A bench includes it with `mod common;`.
// Each bench uses its own part of this.
#![allow(dead_code, clippy::print_stdout)]

use std::time::Duration;

use serde_json::{Value, json};

/// The prefix of the machine-readable lines the runner collects.
pub const LINE_PREFIX: &str = "BENCH ";

/// A repeated measurement, summarised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub min: f64,
    pub median: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: usize,
}

impl Summary {
    /// Of the samples (any order). `None` when there are none.
    pub fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
        Some(Self {
            min: sorted[0],
            median: at(0.5),
            p95: at(0.95),
            p99: at(0.99),
            max: sorted[sorted.len() - 1],
            samples: sorted.len(),
        })
    }

    /// One measurement taken once.
    pub fn single(value: f64) -> Self {
        Self {
            min: value,
            median: value,
            p95: value,
            p99: value,
            max: value,
            samples: 1,
        }
    }

    /// Durations in milliseconds.
    pub fn of_ms(samples: &[Duration]) -> Option<Self> {
        Self::of(&samples.iter().map(|d| ms(*d)).collect::<Vec<_>>())
    }
}

/// Milliseconds, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What a figure should reach. With an anchor it bounds the ratio
/// tfagent / anchor (of the medians); without one, the median itself.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

impl Goal {
    fn met(self, value: f64) -> bool {
        match self {
            Self::AtMost(bound) => value <= bound,
            Self::AtLeast(bound) => value >= bound,
        }
    }

    fn text(self, of_ratio: bool) -> String {
        let x = if of_ratio { "×" } else { "" };
        match self {
            Self::AtMost(bound) => format!("≤ {bound}{x}"),
            Self::AtLeast(bound) => format!("≥ {bound}{x}"),
        }
    }
}

/// The same thing measured another way in the same run, to compare with
/// (`wg syncconf`, keepalived alone, …).
#[derive(Clone, Debug, PartialEq)]
pub struct Anchor {
    pub name: String,
    pub value: Summary,
}

/// One figure of a bench.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// The bench's name (its file's stem).
    pub bench: &'static str,
    pub metric: String,
    pub unit: &'static str,
    pub value: Summary,
    pub anchor: Option<Anchor>,
    pub goal: Option<Goal>,
    /// How it was measured, in a few words.
    pub note: String,
    /// The goal and the ratio are on the p95, not the median (tail goals
    /// such as failover times).
    pub on_p95: bool,
}

impl Figure {
    pub fn new(
        bench: &'static str,
        metric: impl Into<String>,
        unit: &'static str,
        value: Summary,
    ) -> Self {
        Self {
            bench,
            metric: metric.into(),
            unit,
            value,
            anchor: None,
            goal: None,
            note: String::new(),
            on_p95: false,
        }
    }

    /// Judges the goal, and the ratio to the anchor, on the p95.
    pub fn on_p95(mut self) -> Self {
        self.on_p95 = true;
        self
    }

    /// The statistic goals and ratios use.
    fn judged(&self, summary: &Summary) -> f64 {
        if self.on_p95 {
            summary.p95
        } else {
            summary.median
        }
    }

    fn goal_text(&self, goal: Goal) -> String {
        let text = goal.text(self.anchor.is_some());
        if self.on_p95 {
            format!("p95 {text}")
        } else {
            text
        }
    }

    pub fn anchor(mut self, name: impl Into<String>, value: Summary) -> Self {
        self.anchor = Some(Anchor {
            name: name.into(),
            value,
        });
        self
    }

    pub fn goal(mut self, goal: Goal) -> Self {
        self.goal = Some(goal);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// tfagent's median (or p95) over the anchor's.
    pub fn ratio(&self) -> Option<f64> {
        let anchor = self.anchor.as_ref()?;
        let base = self.judged(&anchor.value);
        (base > 0.0).then(|| self.judged(&self.value) / base)
    }

    /// Whether the goal is met; `None` without a goal.
    pub fn met(&self) -> Option<bool> {
        let goal = self.goal?;
        match &self.anchor {
            Some(_) => self.ratio().map(|r| goal.met(r)),
            None => Some(goal.met(self.judged(&self.value))),
        }
    }

    fn json(&self) -> Value {
        let summary = |s: &Summary| json!({"min": s.min, "median": s.median, "p95": s.p95, "p99": s.p99, "max": s.max, "samples": s.samples});
        json!({
            "bench": self.bench,
            "metric": self.metric,
            "unit": self.unit,
            "status": "measured",
            "value": summary(&self.value),
            "anchor": self.anchor.as_ref().map(|a| json!({"name": a.name, "value": summary(&a.value)})),
            "ratio": self.ratio(),
            "goal": self.goal.map(|g| self.goal_text(g)),
            "met": self.met(),
            "note": self.note,
        })
    }

    fn human(&self) -> String {
        let v = &self.value;
        let mut line = if v.samples > 1 {
            format!(
                "{}: median {} {u}, p95 {} {u}, p99 {} {u} (min {}, max {}, n={})",
                self.metric,
                number(v.median),
                number(v.p95),
                number(v.p99),
                number(v.min),
                number(v.max),
                v.samples,
                u = self.unit
            )
        } else {
            format!("{}: {} {}", self.metric, number(v.median), self.unit)
        };
        if let Some(anchor) = &self.anchor {
            line += &format!(
                "; {} median {} {}",
                anchor.name,
                number(anchor.value.median),
                self.unit
            );
            if let Some(ratio) = self.ratio() {
                line += &format!(", ratio {ratio:.3}");
            }
        }
        if let (Some(goal), Some(met)) = (self.goal, self.met()) {
            let verdict = if met { "met" } else { "MISSED" };
            line += &format!("  (goal {}: {verdict})", self.goal_text(goal));
        }
        line
    }
}

/// Prints the figure for people and for the runner.
pub fn report(figure: &Figure) {
    println!("  {}", figure.human());
    println!("{LINE_PREFIX}{}", figure.json());
}

/// Says that a figure could not be measured, and why.
pub fn unmeasured(bench: &'static str, metric: &str, reason: &str) {
    println!("  {metric}: not measured: {reason}");
    println!(
        "{LINE_PREFIX}{}",
        json!({"bench": bench, "metric": metric, "status": "not measured", "note": reason})
    );
}

/// A knob for longer (or shorter) runs: `TFAGENT_BENCH_<NAME>`, else `default`.
pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(format!("TFAGENT_BENCH_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A number with as many decimals as its size asks for.
fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// A `tfagent` started by a bench; killed when dropped.
pub struct LocalAgent(pub std::process::Child);

impl Drop for LocalAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl LocalAgent {
    /// Starts `tfagent --config CONFIG` (output discarded) and waits, up
    /// to 30 s, until its `socket` exists.
    pub fn start(tfagent: &str, config: &std::path::Path, socket: &std::path::Path) -> Self {
        let child = std::process::Command::new(tfagent)
            .arg("--config")
            .arg(config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tfagent starts");
        let agent = Self(child);
        let started = std::time::Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tfagent did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// A process's resident set size in KiB (0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
