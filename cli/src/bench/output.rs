//! What every bench prints: grouped numbers, aligned rows, the curve backend in use.

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
