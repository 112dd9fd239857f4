//! What the kernel says about a server process: CPU time used and resident memory.

use std::fs;
use std::time::Duration;

/// CPU time (user + system) used so far by `pid`, including threads that have already exited
/// (a thread-per-connection server's threads come and go).
///
/// Read from the process's CPU-time clock (`clock_getcpuclockid`), to the nanosecond; if that is
/// refused, from `/proc/PID/stat`, whose resolution is one clock tick (10 ms at the usual 100 Hz).
pub fn cpu_time(pid: i32) -> Option<Duration> {
    cpu_clock(pid).or_else(|| cpu_ticks(pid))
}

fn cpu_clock(pid: i32) -> Option<Duration> {
    use nix::time::{clock_getcpuclockid, clock_gettime};
    let clock = clock_getcpuclockid(nix::unistd::Pid::from_raw(pid)).ok()?;
    let now = clock_gettime(clock).ok()?;
    Some(Duration::new(
        u64::try_from(now.tv_sec()).ok()?,
        u32::try_from(now.tv_nsec()).ok()?,
    ))
}

fn cpu_ticks(pid: i32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&hz| hz > 0)
        .unwrap_or(100) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// Resident set size of `pid`, in KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sources_agree_on_a_busy_child() {
        // A child that burns CPU for a moment, then waits to be read.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        std::thread::sleep(Duration::from_millis(1500));
        let clock = cpu_clock(pid).expect("the CPU clock of a child is readable");
        let ticks = cpu_ticks(pid).expect("/proc/PID/stat is readable");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(clock > Duration::from_millis(20), "{clock:?}");
        let diff = clock.abs_diff(ticks);
        assert!(diff <= Duration::from_millis(30), "{clock:?} vs {ticks:?}");
    }
}
