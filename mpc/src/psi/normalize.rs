//! Key types: how one key column's text becomes the bytes that are matched.
//!
//! Two parties only find a common key when both wrote it the same way. Data from different
//! systems rarely does: one export has full-width digits, another a trailing non-breaking space,
//! a third a lowercase `x` in an identity number. A [`KeyType`] names the rules that turn every
//! spelling of one key into one form; both parties must use the same type for a column (it is
//! part of the session parameters). A field that is not a valid key of its type is refused with
//! a [`KeyFault`] that never repeats the field's text, since keys are personal data.
//!
//! # Every type: invisible characters and NFKC
//! First U+FEFF (byte order mark, zero-width no-break space) and the invisible format characters
//! U+200B, U+200C, U+200D and U+2060 are dropped wherever they occur. Then the text is put in
//! Unicode NFKC, so compatibility variants become their plain form: full-width digits and letters
//! such as `１１０` and `ｘ` become ASCII `110` and `x`, and U+00A0 (no-break space) and U+3000
//! (ideographic space) become U+0020. "White space" below means the Unicode `White_Space`
//! property. For every type, a field with nothing left after its rules is a missing value
//! ([`KeyFault::Empty`]): the row is excluded, not matched. The Unicode data is that of the
//! `unicode-normalization` crate (NFKC, Unicode 18.0 in 0.1.26) and the `caseless` crate (case
//! folding, Unicode 16.0 in 0.2.2); the known-answer vectors in `tests/vectors/key_types_v1.json`
//! pin the result, so a table update that changes a key is seen.
//!
//! # `text`, `text:case-sensitive`
//! Leading and trailing white space is trimmed and every inner run of white space becomes one
//! U+0020. Unless the type is `text:case-sensitive`, the text is then case-folded: Unicode default
//! case folding followed by NFKC, repeated until it no longer changes (once has been enough for
//! every input tried), so `Straße`, `STRASSE` and `strasse` are one key, and normalizing a
//! normalized key gives it back. `text` is the default type.
//!
//! # `cn-resident-id`, `cn-resident-id:legacy-15`
//! PRC resident identity number (GB 11643-1999). All white space is removed and `x` becomes `X`.
//! The result must be 18 characters: 17 ASCII digits and a check character `0`–`9` or `X`, which
//! must match ISO 7064 MOD 11-2 (weights 7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2 for
//! positions 1–17; check value `(12 − Σ digit·weight mod 11) mod 11`, written `X` for 10).
//! With `legacy-15`, a 15-digit number from before 1999 is accepted and converted to its 18-digit
//! form: `19` is inserted after the six-digit region code and the check character is appended,
//! so `110105491231002` and `11010519491231002X` are one key. Without it, 15 digits are refused.
//! Only the check character is verified: the region code and the embedded birth date are not.
//!
//! # `cn-uscc`
//! Unified social credit code of a legal person or other organization (GB 32100-2015). All white
//! space is removed and ASCII letters are uppercased. The result must be 18 characters from
//! `0123456789ABCDEFGHJKLMNPQRTUWXY` (`I`, `O`, `Z`, `S` and `V` are not used), the last a check
//! character: with each character's value its index in that alphabet and weights 1, 3, 9, 27, 19,
//! 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28 for positions 1–17, the check value is
//! `31 − (Σ value·weight mod 31)`, and 31 is written `0`. Only the check character is verified.
//!
//! # `phone`
//! White space and the separators `-` `(` `)` `.` `/` are removed. A leading `+` is the
//! international prefix and becomes `00` (a `+` anywhere else is refused). A PRC mobile number
//! with its country code — `0086` or `86` followed by exactly 11 digits beginning with `1` — loses
//! the country code, so `+86 138 0013 8000` and `13800138000` are one key. The result must be
//! 3 to 17 ASCII digits. No other prefix is rewritten: in particular a landline's trunk prefix
//! (`010 …` against `+86 10 …`) is kept as written, so both parties must write landlines the same
//! way.
//!
//! # `email`
//! Leading and trailing white space is trimmed; white space or control characters inside are
//! refused. There must be exactly one `@`, a non-empty local part before it, and a non-empty
//! domain after it without empty labels (`a@b..c`, `a@.b`, `a@b.` are refused). The whole address
//! is case-folded as `text` is: the local part is treated as case-insensitive, as practically
//! every provider does. Nothing else is rewritten: no dots are removed and no `+tag` is dropped,
//! since which addresses are one mailbox depends on the provider.
//!
//! # Fault positions
//! [`KeyFault::Character`] counts characters from 0 in the text the checks see: after the common
//! first step and, for the identifier types and `phone`, after white space (and for `phone` the
//! separators) has been removed; for `email`, after trimming.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use caseless::Caseless as _;
use unicode_normalization::{IsNormalized, UnicodeNormalization as _, is_nfkc_quick};

/// How one key column's text is turned into the bytes that are matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    /// Free text. Default: case_sensitive = false.
    Text {
        /// Keep letter case as written (`text:case-sensitive`) instead of case folding.
        case_sensitive: bool,
    },
    /// 18-character PRC resident identity number (GB 11643-1999). legacy_15: accept 15-digit
    /// legacy numbers and convert to 18.
    CnResidentId {
        /// Accept 15-digit numbers from before 1999 and convert them to 18 characters.
        legacy_15: bool,
    },
    /// 18-character unified social credit code for legal persons (GB 32100-2015).
    CnUscc,
    /// Telephone number.
    Phone,
    /// E-mail address.
    Email,
}

/// Every key type, in the order the names are listed in a parse error.
const ALL: [KeyType; 7] = [
    KeyType::TEXT,
    KeyType::Text {
        case_sensitive: true,
    },
    KeyType::CnResidentId { legacy_15: false },
    KeyType::CnResidentId { legacy_15: true },
    KeyType::CnUscc,
    KeyType::Phone,
    KeyType::Email,
];

impl KeyType {
    /// Case-insensitive free text, the default.
    pub const TEXT: KeyType = KeyType::Text {
        case_sensitive: false,
    };

    /// Parses the names used on the command line: "text", "text:case-sensitive",
    /// "cn-resident-id", "cn-resident-id:legacy-15", "cn-uscc", "phone", "email". Err(String)
    /// names the input and lists the valid names.
    pub fn parse(s: &str) -> Result<Self, String> {
        ALL.into_iter().find(|ty| ty.name() == s).ok_or_else(|| {
            let names: Vec<&str> = ALL.iter().map(|ty| ty.name()).collect();
            format!(
                "unknown key type {s:?}; valid types are: {}",
                names.join(", ")
            )
        })
    }

    /// The name as `parse` takes it (round-trips).
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Text {
                case_sensitive: false,
            } => "text",
            KeyType::Text {
                case_sensitive: true,
            } => "text:case-sensitive",
            KeyType::CnResidentId { legacy_15: false } => "cn-resident-id",
            KeyType::CnResidentId { legacy_15: true } => "cn-resident-id:legacy-15",
            KeyType::CnUscc => "cn-uscc",
            KeyType::Phone => "phone",
            KeyType::Email => "email",
        }
    }

    /// A stable one-byte code, distinct per variant and option, for session digests.
    ///
    /// These codes are part of the wire: two parties whose digests differ refuse to run, so a
    /// code must never be renumbered or reused. A new type or option takes the next unused code;
    /// 0 is never assigned, so a zeroed byte is never a valid type.
    pub fn code(self) -> u8 {
        match self {
            KeyType::Text {
                case_sensitive: false,
            } => 1,
            KeyType::Text {
                case_sensitive: true,
            } => 2,
            KeyType::CnResidentId { legacy_15: false } => 3,
            KeyType::CnResidentId { legacy_15: true } => 4,
            KeyType::CnUscc => 5,
            KeyType::Phone => 6,
            KeyType::Email => 7,
        }
    }
}

impl Default for KeyType {
    fn default() -> Self {
        Self::TEXT
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why a field is not a valid key of its type. Never carries the field's text (keys are
/// personal data and errors may be logged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFault {
    /// Nothing left after normalization (a missing value: the row is excluded, not matched).
    #[error("empty value")]
    Empty,
    /// e.g. length 17, expected 18 (or 15 or 18 with legacy)
    #[error("{expected} characters expected, found {found}")]
    Length {
        /// Characters found after normalization.
        found: usize,
        /// What the type accepts: `"18"`, `"15 or 18"`, `"3 to 17"`.
        expected: &'static str,
    },
    /// A character not allowed at this (0-based, in chars after normalization) position.
    ///
    /// The message counts from 1, as a reader of the field does.
    #[error("character {} is not allowed here", .position + 1)]
    Character {
        /// 0-based position, in characters after normalization (see the module docs).
        position: usize,
    },
    /// The check digit / check character does not match.
    #[error("check digit does not match")]
    CheckDigit,
    /// Structure wrong for the type (e.g. email without exactly one '@'); a static reason.
    #[error("{0}")]
    Format(&'static str),
}

/// Appends the normalized form of `field` (UTF-8) to `out`. On Err, `out` is left exactly as it
/// was (truncate back).
pub fn normalize_into(ty: KeyType, field: &str, out: &mut Vec<u8>) -> Result<(), KeyFault> {
    let start = out.len();
    let result = match ty {
        KeyType::Text { case_sensitive } => text(field, !case_sensitive, out),
        KeyType::CnResidentId { legacy_15 } => resident_id(field, legacy_15, out),
        KeyType::CnUscc => uscc(field, out),
        KeyType::Phone => phone(field, out),
        KeyType::Email => email(field, out),
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Convenience: the normalized form as a String.
pub fn normalize(ty: KeyType, field: &str) -> Result<String, KeyFault> {
    let mut out = Vec::new();
    normalize_into(ty, field, &mut out)?;
    // Only whole `str`s and ASCII bytes are ever appended, so `out` is UTF-8 and the lossy
    // branch is never taken; it is there so that no panic path exists.
    Ok(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// The invisible format characters dropped before anything else: they are how copy and paste
/// and spreadsheet exports make two equal-looking values differ.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{feff}' | '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}'
    )
}

/// The common first step: invisible characters dropped, then NFKC. ASCII text (nearly every
/// key) and text already in that form are borrowed, not copied.
fn prepare(field: &str) -> Cow<'_, str> {
    if field.is_ascii()
        || (!field.chars().any(invisible) && is_nfkc_quick(field.chars()) == IsNormalized::Yes)
    {
        Cow::Borrowed(field)
    } else {
        Cow::Owned(field.chars().filter(|&c| !invisible(c)).nfkc().collect())
    }
}

/// Unicode `White_Space` restricted to ASCII: tab, line feed, vertical tab, form feed, carriage
/// return and space (not `u8::is_ascii_whitespace`, which leaves out vertical tab).
fn ascii_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ')
}

/// Unicode default case folding then NFKC, repeated until stable, so that a folded key folds to
/// itself. Normalization is not closed under case folding (Unicode's compatibility caseless
/// match, D146, folds twice for that reason). With the crates' tables no input is known that needs
/// a second round: every code point alone, after a letter and around U+0345 was checked; the
/// confirming round is the guarantee, and the bound keeps a table bug from looping.
fn fold(text: &str) -> String {
    let mut folded: String = text.chars().default_case_fold().nfkc().collect();
    for _ in 0..4 {
        let again: String = folded.chars().default_case_fold().nfkc().collect();
        if again == folded {
            break;
        }
        folded = again;
    }
    folded
}

fn text(field: &str, case_fold: bool, out: &mut Vec<u8>) -> Result<(), KeyFault> {
    if field.is_ascii() {
        return ascii_text(field.as_bytes(), case_fold, out);
    }
    let prepared = prepare(field);
    let mut collapsed = String::with_capacity(prepared.len());
    for word in prepared
        .split(char::is_whitespace)
        .filter(|w| !w.is_empty())
    {
        if !collapsed.is_empty() {
            collapsed.push(' ');
        }
        collapsed.push_str(word);
    }
    if collapsed.is_empty() {
        return Err(KeyFault::Empty);
    }
    if case_fold {
        out.extend_from_slice(fold(&collapsed).as_bytes());
    } else {
        out.extend_from_slice(collapsed.as_bytes());
    }
    Ok(())
}

/// `text` for ASCII input, which is already NFKC and has no invisible characters: trimmed,
/// collapsed and lowercased straight into `out`, without an intermediate string. A key with no
/// white space to collapse (the usual case) is copied in one piece.
fn ascii_text(bytes: &[u8], case_fold: bool, out: &mut Vec<u8>) -> Result<(), KeyFault> {
    let first = bytes.iter().position(|&b| !ascii_space(b));
    let last = bytes.iter().rposition(|&b| !ascii_space(b));
    let (Some(first), Some(last)) = (first, last) else {
        return Err(KeyFault::Empty);
    };
    let trimmed = &bytes[first..=last];
    let start = out.len();
    // The last byte is not white space, so every white space byte is the first of a window.
    let collapse = trimmed
        .windows(2)
        .any(|w| ascii_space(w[0]) && (w[0] != b' ' || ascii_space(w[1])));
    if collapse {
        out.reserve(trimmed.len());
        let mut space = false;
        for &b in trimmed {
            if ascii_space(b) {
                space = true;
            } else {
                if space {
                    out.push(b' ');
                    space = false;
                }
                out.push(b);
            }
        }
    } else {
        out.extend_from_slice(trimmed);
    }
    if case_fold {
        // Default case folding of ASCII is exactly A–Z to a–z.
        out[start..].make_ascii_lowercase();
    }
    Ok(())
}

/// Calls `each` with the position and character of every character of `prepared` that is not
/// `dropped`, stopping at the first `Err`. ASCII text (nearly every key) is read byte by byte,
/// without UTF-8 decoding.
fn each_kept(
    prepared: &str,
    dropped: fn(char) -> bool,
    mut each: impl FnMut(usize, char) -> Result<(), KeyFault>,
) -> Result<(), KeyFault> {
    if prepared.is_ascii() {
        let chars = prepared.bytes().map(char::from);
        chars
            .filter(|&c| !dropped(c))
            .enumerate()
            .try_for_each(|(position, c)| each(position, c))
    } else {
        let chars = prepared.chars();
        chars
            .filter(|&c| !dropped(c))
            .enumerate()
            .try_for_each(|(position, c)| each(position, c))
    }
}

/// ISO 7064 MOD 11-2 weights of a resident identity number's positions 1–17 (2^(17−i) mod 11).
const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/// The check character of 17 ASCII digits.
fn resident_id_check(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(&d, w)| u32::from(d - b'0') * w)
        .sum();
    match (12 - sum % 11) % 11 {
        10 => b'X',
        // Below 10, so one digit.
        v => b'0' + v as u8,
    }
}

fn resident_id(field: &str, legacy_15: bool, out: &mut Vec<u8>) -> Result<(), KeyFault> {
    let prepared = prepare(field);
    let start = out.len();
    let mut found = 0;
    each_kept(&prepared, char::is_whitespace, |position, c| {
        let c = if c == 'x' { 'X' } else { c };
        if !(c.is_ascii_digit() || c == 'X') {
            return Err(KeyFault::Character { position });
        }
        // An overlong field is only counted, not copied.
        if position < 18 {
            out.push(c as u8);
        }
        found += 1;
        Ok(())
    })?;
    let expected = if legacy_15 { "15 or 18" } else { "18" };
    match found {
        0 => return Err(KeyFault::Empty),
        18 => {}
        15 if legacy_15 => {}
        _ => return Err(KeyFault::Length { found, expected }),
    }
    let digits = found.min(17);
    if let Some(position) = out[start..start + digits].iter().position(|&b| b == b'X') {
        return Err(KeyFault::Character { position });
    }
    if found == 15 {
        let mut id = [0u8; 17];
        id[..6].copy_from_slice(&out[start..start + 6]);
        id[6..8].copy_from_slice(b"19");
        id[8..].copy_from_slice(&out[start + 6..start + 15]);
        out.truncate(start);
        out.extend_from_slice(&id);
        out.push(resident_id_check(&id));
    } else if resident_id_check(&out[start..start + 17]) != out[start + 17] {
        return Err(KeyFault::CheckDigit);
    }
    Ok(())
}

/// The 31 characters of a unified social credit code; a character's value is its index.
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Weights of a unified social credit code's positions 1–17 (3^(i−1) mod 31).
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

fn uscc_value(b: u8) -> Option<u32> {
    USCC_ALPHABET.iter().position(|&a| a == b).map(|v| v as u32)
}

fn uscc(field: &str, out: &mut Vec<u8>) -> Result<(), KeyFault> {
    let prepared = prepare(field);
    let start = out.len();
    let mut found = 0;
    each_kept(&prepared, char::is_whitespace, |position, c| {
        let c = c.to_ascii_uppercase();
        if !c.is_ascii() || uscc_value(c as u8).is_none() {
            return Err(KeyFault::Character { position });
        }
        if position < 18 {
            out.push(c as u8);
        }
        found += 1;
        Ok(())
    })?;
    match found {
        0 => return Err(KeyFault::Empty),
        18 => {}
        _ => {
            return Err(KeyFault::Length {
                found,
                expected: "18",
            });
        }
    }
    let code = &out[start..start + 18];
    let sum: u32 = code[..17]
        .iter()
        .zip(USCC_WEIGHTS)
        .map(|(&b, w)| uscc_value(b).unwrap_or(0) * w)
        .sum();
    // 31 − (sum mod 31) lies in 1..=31, and 31 is written as 0: that is (31 − sum mod 31) mod 31.
    let check = USCC_ALPHABET[((31 - sum % 31) % 31) as usize];
    if code[17] != check {
        return Err(KeyFault::CheckDigit);
    }
    Ok(())
}

/// Separators people write inside telephone numbers.
fn phone_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '-' | '(' | ')' | '.' | '/')
}

/// Most digits of a telephone number (ITU-T E.164 allows 15 after the international prefix,
/// which is written as the two digits `00`).
const PHONE_MAX_DIGITS: usize = 17;

fn phone(field: &str, out: &mut Vec<u8>) -> Result<(), KeyFault> {
    let prepared = prepare(field);
    let start = out.len();
    let mut found = 0;
    each_kept(&prepared, phone_separator, |position, c| {
        let digits: &[u8] = match c {
            '+' if position == 0 => b"00",
            '+' => return Err(KeyFault::Format("'+' is allowed only at the start")),
            '0'..='9' => &[c as u8],
            _ => return Err(KeyFault::Character { position }),
        };
        for &d in digits {
            // An overlong field is only counted, not copied.
            if found <= PHONE_MAX_DIGITS {
                out.push(d);
            }
            found += 1;
        }
        Ok(())
    })?;
    if found == 0 {
        return Err(KeyFault::Empty);
    }
    let number = &out[start..];
    let mobile = |prefix: usize| {
        found == prefix + 11 && number.get(prefix) == Some(&b'1') && {
            let country: &[u8] = if prefix == 4 { b"0086" } else { b"86" };
            number.starts_with(country)
        }
    };
    if let Some(prefix) = [4, 2].into_iter().find(|&p| mobile(p)) {
        out.drain(start..start + prefix);
        found -= prefix;
    }
    if !(3..=PHONE_MAX_DIGITS).contains(&found) {
        return Err(KeyFault::Length {
            found,
            expected: "3 to 17",
        });
    }
    Ok(())
}

fn email(field: &str, out: &mut Vec<u8>) -> Result<(), KeyFault> {
    let prepared = prepare(field);
    let address = prepared.trim();
    if address.is_empty() {
        return Err(KeyFault::Empty);
    }
    if let Some(position) = address
        .chars()
        .position(|c| c.is_whitespace() || c.is_control())
    {
        return Err(KeyFault::Character { position });
    }
    let Some((local, domain)) = address.split_once('@') else {
        return Err(KeyFault::Format("exactly one '@' expected"));
    };
    if domain.contains('@') {
        return Err(KeyFault::Format("exactly one '@' expected"));
    }
    if local.is_empty() {
        return Err(KeyFault::Format("nothing before the '@'"));
    }
    if domain.is_empty() {
        return Err(KeyFault::Format("nothing after the '@'"));
    }
    if domain.split('.').any(str::is_empty) {
        return Err(KeyFault::Format("the domain has an empty label"));
    }
    if address.is_ascii() {
        let start = out.len();
        out.extend_from_slice(address.as_bytes());
        out[start..].make_ascii_lowercase();
    } else {
        out.extend_from_slice(fold(address).as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
