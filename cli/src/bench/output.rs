//! What every bench prints: grouped numbers, aligned rows, the curve backend in use, progress.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Which curve25519-dalek backend multiplies on this machine, by dalek's own selection rule.
pub(crate) fn multiplication_backend() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(curve25519_dalek_backend = "avx512")
            && std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return "avx512-ifma";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
    }
    "serial"
}

/// 1234567 → "1,234,567".
pub(crate) fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The rows of a bench report, names aligned.
pub(crate) fn print_rows(rows: &[(&str, String)]) {
    for (name, value) in rows {
        println!("  {name:<22}{value}");
    }
}

/// This process's peak resident memory in bytes (`VmHWM`, Linux only).
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// A progress bar over `total` steps, or a spinner when `total` is 0.
pub(crate) fn progress_bar(total: u64, message: &'static str) -> ProgressBar {
    let bar = if total == 0 {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {percent}%")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(message);
    if total == 0 {
        bar.enable_steady_tick(Duration::from_millis(200));
    }
    bar
}
