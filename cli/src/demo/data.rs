//! Synthetic but realistic registries for the demo: one population of residents with 18-digit
//! resident ID numbers (region code, birth date, sequence, ISO 7064 MOD 11-2 check character),
//! from which each department holds an overlapping subset with its own columns. Deterministic
//! for a seed, so the demo can print true values next to the noised ones.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write as _};
use std::path::Path;

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

/// Districts with their 6-digit region codes (the first six digits of a resident ID).
pub(crate) const DISTRICTS: [(&str, &str); 6] = [
    ("north", "110101"),
    ("south", "110102"),
    ("east", "110105"),
    ("west", "110106"),
    ("harbour", "110107"),
    ("hills", "110108"),
];

/// One resident.
struct Person {
    nin: String,
    district: usize,
    age: u32,
}

/// The check character of the first 17 digits (ISO 7064 MOD 11-2, as resident IDs use).
fn check_char(first17: &[u8]) -> char {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    b"10X98765432"[(sum % 11) as usize] as char
}

/// A resident ID as civil's export writes it (row `n`): `x` in lowercase, and full-width digits
/// in every seventh row.
fn as_exported(nin: &str, n: usize) -> String {
    let lower = nin.to_lowercase();
    if n % 7 != 3 {
        return lower;
    }
    lower
        .chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => char::from_u32(0xFF10 + d).unwrap_or(c),
            None => c,
        })
        .collect()
}

fn population(size: usize, rng: &mut StdRng) -> Vec<Person> {
    let mut seen = std::collections::HashSet::with_capacity(size);
    let mut people = Vec::with_capacity(size);
    while people.len() < size {
        let district = rng.random_range(0..DISTRICTS.len());
        let age = rng.random_range(0..95u32);
        let year = 2026 - age;
        let (month, day) = (rng.random_range(1..=12u32), rng.random_range(1..=28u32));
        let seq = rng.random_range(0..1000u32);
        let first17 = format!(
            "{}{year:04}{month:02}{day:02}{seq:03}",
            DISTRICTS[district].1
        );
        let nin = format!("{first17}{}", check_char(first17.as_bytes()));
        if seen.insert(nin.clone()) {
            people.push(Person { nin, district, age });
        }
    }
    people
}

/// What the demo knows about the data it wrote, to print beside the noised results.
#[derive(Debug, Default)]
pub(crate) struct Truth {
    /// Rows per department.
    pub(crate) rows: BTreeMap<&'static str, usize>,
    /// People both in `insured` (health) and `subsidy` (civil).
    pub(crate) insured_and_subsidized: u64,
    /// Their claims, summed, per district (clamped to the demo's bounds).
    pub(crate) claims_of_subsidized_by_district: BTreeMap<&'static str, (u64, i64)>,
    /// Rows of `insured` and their claims summed, each clamped to [0, CLAIMS_MAX].
    pub(crate) claims_rows: u64,
    /// See `claims_rows`.
    pub(crate) claims_clamped_sum: i64,
    /// People in `census` (stats) per district.
    pub(crate) census_by_district: BTreeMap<&'static str, u64>,
    /// Residents per district in each department's register, summed over departments.
    pub(crate) registered_by_district: BTreeMap<&'static str, u64>,
}

/// Upper bound on one claim total in the demo (the join's clamping bound).
pub(crate) const CLAIMS_MAX: i64 = 50_000;

/// Writes `insured.csv` (health), `subsidy.csv` (civil) and `census.csv` (stats) under `dir`,
/// each with `per_department` rows drawn from one population, and returns the true statistics.
pub(crate) fn write(dir: &Path, per_department: usize, seed: u64) -> anyhow::Result<Truth> {
    let mut rng = StdRng::seed_from_u64(seed);
    // Each department covers 40-60 % of a population; overlaps of roughly a third follow.
    let people = population(per_department * 2, &mut rng);
    let pick = |rng: &mut StdRng| -> Vec<usize> {
        let mut idx: Vec<usize> = (0..people.len()).collect();
        for i in 0..per_department {
            let j = rng.random_range(i..idx.len());
            idx.swap(i, j);
        }
        idx.truncate(per_department);
        idx
    };
    let (health, civil, stats) = (pick(&mut rng), pick(&mut rng), pick(&mut rng));
    let mut truth = Truth::default();

    let open = |name: &str| -> anyhow::Result<BufWriter<std::fs::File>> {
        let path = dir.join(name);
        Ok(BufWriter::new(
            std::fs::File::create(&path).with_context(|| path.display().to_string())?,
        ))
    };

    let subsidized: std::collections::HashSet<usize> = civil.iter().copied().collect();
    let mut f = open("insured.csv")?;
    writeln!(f, "nin,district,claims,diagnosis")?;
    const DIAGNOSES: [&str; 5] = ["J45", "E11", "I10", "M54", "F32"];
    for &i in &health {
        let p = &people[i];
        // Claims grow with age and are heavy-tailed: a few large ones.
        let base = 200 + p.age * 40;
        let claims = if rng.random_range(0..20) == 0 {
            rng.random_range(10_000..80_000u32)
        } else {
            rng.random_range(0..=base * 2)
        };
        let district = DISTRICTS[p.district].0;
        truth.claims_rows += 1;
        truth.claims_clamped_sum += i64::from(claims).min(CLAIMS_MAX);
        writeln!(
            f,
            "{},{district},{claims},{}",
            p.nin,
            DIAGNOSES[rng.random_range(0..DIAGNOSES.len())]
        )?;
        if subsidized.contains(&i) {
            truth.insured_and_subsidized += 1;
            let e = truth
                .claims_of_subsidized_by_district
                .entry(district)
                .or_default();
            e.0 += 1;
            e.1 += i64::from(claims).min(CLAIMS_MAX);
        }
        *truth.registered_by_district.entry(district).or_default() += 1;
    }
    f.flush()?;

    // Civil's export is written as its office software writes it: a lowercase check letter, and
    // full-width digits in every seventh row. Its key type (cn-resident-id) matches them all.
    let mut f = open("subsidy.csv")?;
    writeln!(f, "nin,district,subsidy,household")?;
    for (n, &i) in civil.iter().enumerate() {
        let p = &people[i];
        let district = DISTRICTS[p.district].0;
        writeln!(
            f,
            "{},{district},{},{}",
            as_exported(&p.nin, n),
            rng.random_range(300..2_400u32),
            rng.random_range(1..7u32)
        )?;
        *truth.registered_by_district.entry(district).or_default() += 1;
    }
    f.flush()?;

    let mut f = open("census.csv")?;
    writeln!(f, "nin,district,age,income")?;
    for &i in &stats {
        let p = &people[i];
        let district = DISTRICTS[p.district].0;
        let income = if p.age < 18 {
            0
        } else {
            rng.random_range(20_000..200_000u32)
        };
        writeln!(f, "{},{district},{},{income}", p.nin, p.age)?;
        *truth.census_by_district.entry(district).or_default() += 1;
        *truth.registered_by_district.entry(district).or_default() += 1;
    }
    f.flush()?;
    for name in ["health", "civil", "stats"] {
        truth.rows.insert(name, per_department);
    }
    Ok(truth)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_a_valid_check_character_and_departments_overlap() {
        // A published example ID: 11010519491231002X.
        assert_eq!(check_char(b"11010519491231002"), 'X');
        let dir = tempfile::tempdir().unwrap();
        let truth = write(dir.path(), 2_000, 7).unwrap();
        let insured = std::fs::read_to_string(dir.path().join("insured.csv")).unwrap();
        let subsidy = std::fs::read_to_string(dir.path().join("subsidy.csv")).unwrap();
        // As matched: civil writes a lowercase x and some full-width digits.
        let id_type = concord_mpc::psi::KeyType::CnResidentId { legacy_15: false };
        let ids = |text: &str| -> std::collections::HashSet<String> {
            text.lines()
                .skip(1)
                .map(|l| {
                    let id = l.split(',').next().unwrap();
                    concord_mpc::psi::normalize::normalize(id_type, id).unwrap()
                })
                .collect()
        };
        assert!(
            subsidy.contains('x') && subsidy.contains('\u{ff11}'),
            "a messy export"
        );
        let (a, b) = (ids(&insured), ids(&subsidy));
        assert_eq!((a.len(), b.len()), (2_000, 2_000));
        for id in a.iter().take(50) {
            assert_eq!(id.len(), 18);
            assert_eq!(check_char(&id.as_bytes()[..17]), id.as_bytes()[17] as char);
        }
        let both = a.intersection(&b).count() as u64;
        assert_eq!(both, truth.insured_and_subsidized);
        assert!((700..1_300).contains(&both), "{both}");
        let by_district: u64 = truth
            .claims_of_subsidized_by_district
            .values()
            .map(|(n, _)| n)
            .sum();
        assert_eq!(by_district, both);
    }
}
