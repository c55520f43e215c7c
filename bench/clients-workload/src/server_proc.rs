//! The server's processes as Linux shows them: resident memory (`VmRSS`, summed over the
//! given pids) and CPU time (user + system, from `/proc/PID/stat`).

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// The sum of `VmRSS` over `pids`, in bytes.
pub fn rss_bytes(pids: &[u32]) -> Result<u64, String> {
    let mut total = 0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("/proc/{pid}/status has no VmRSS"))?;
        total += kb * 1024;
    }
    Ok(total)
}

/// The CPU time used so far by `pids` (all threads), in seconds.
pub fn cpu_seconds(pids: &[u32]) -> Result<f64, String> {
    let mut total = 0.0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
        // The command name (field 2) may hold spaces: count fields after its ')'.
        let after = stat
            .rfind(')')
            .map(|i| &stat[i + 1..])
            .ok_or_else(|| format!("/proc/{pid}/stat: no ')'"))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15, so 11 and 12 after the name's ')'.
        let tick = |i: usize| -> Result<f64, String> {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| format!("/proc/{pid}/stat: field {}", i + 3))
        };
        total += (tick(11)? + tick(12)?) / TICKS_PER_SECOND;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(&[me]).unwrap() > 1024 * 1024);
        assert!(cpu_seconds(&[me]).unwrap() >= 0.0);
        assert!(rss_bytes(&[u32::MAX]).is_err());
    }
}
