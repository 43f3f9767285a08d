//! CPU time of processes, read from `/proc`, so that a benchmark can print
//! what each call costs besides how long it takes.

use std::time::Duration;

/// CPU time (user + system) a process has used so far, from
/// `/proc/<pid>/stat`; `None` where there is no such file.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel reports in USER_HZ, 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time used by some processes from `start` on.
pub struct CpuMeter {
    pids: Vec<u32>,
    start: Vec<Duration>,
}

impl CpuMeter {
    pub fn start(pids: &[u32]) -> CpuMeter {
        CpuMeter {
            pids: pids.to_vec(),
            start: pids.iter().map(|p| cpu_time(*p).unwrap_or_default()).collect(),
        }
    }

    /// Each process's CPU time since `start`, divided by `n`.
    pub fn per(&self, n: usize) -> Vec<Duration> {
        let now = self.pids.iter().map(|p| cpu_time(*p).unwrap_or_default());
        now.zip(&self.start).map(|(now, start)| now.saturating_sub(*start) / n as u32).collect()
    }
}
